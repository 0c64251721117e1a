"""What the criteria that need more than a weight's magnitude score: synaptic strength reads
the next layer, the second-order criterion the empirical Fisher."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.func import functional_call, grad, vmap

from automl.compress._criteria import SynapticStrength, fisher_diagonal, get_criterion


def _conv_bn_conv() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3)
    )
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([1.0, 5.0, 2.0, 3.0]))
        model[3].weight.fill_(1.0)
        model[3].weight[:, 1] = 0.0  # channel 1 fires strongly, and nothing reads it
        model[3].weight[:, 2] *= 2.0
    return model.eval()


def _scores(model: nn.Module, importance: tp.importance.Importance) -> torch.Tensor:
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 1, 6, 6))
    group = graph.get_pruning_group(model[0], tp.prune_conv_out_channels, idxs=list(range(4)))
    return importance(group)


def test_synaptic_strength_is_the_bn_scale_times_the_norm_of_the_kernels_that_read_it():
    model = _conv_bn_conv()
    scores = _scores(model, SynapticStrength())
    kernel = model[3].weight.detach().transpose(0, 1).flatten(1).norm(dim=1)
    assert torch.allclose(scores, model[1].weight.detach() * kernel)
    assert scores.argmin() == 1  # the largest BN scale, read by no one
    assert _scores(model, tp.importance.BNScaleImportance()).argmin() == 0  # BN scale alone


def test_fisher_diagonal_is_the_mean_of_each_images_squared_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(10, 1, 3, 4), torch.randint(0, 3, (10,))
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, xi, yi):
        return F.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    per_image = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    fisher_diagonal(model, x, y)
    batch = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    for (name, p), g in zip(model.named_parameters(), batch, strict=True):
        assert torch.allclose(p.grad, (per_image[name] ** 2).mean(0), atol=1e-7)
        assert (p.grad >= g**2 - 1e-7).all() and not torch.allclose(p.grad, g**2)


def test_the_second_order_criterion_prepares_the_fisher_and_reads_it():
    spec = get_criterion("hessian")
    assert spec.prepare is fisher_diagonal
    model = _conv_bn_conv()
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 2, (8,))
    head = nn.Sequential(model, nn.Flatten(), nn.LazyLinear(2))
    head(x)
    spec.prepare(head, x, y)
    scores = _scores(model, spec.make())
    conv, bn = model[0], model[1]
    # OBD of the conv's filters, BN's scales and the next conv's input kernels, averaged
    obd = [
        (conv.weight**2 * conv.weight.grad).flatten(1).sum(1),
        bn.weight**2 * bn.weight.grad,
        (model[3].weight ** 2 * model[3].weight.grad).transpose(0, 1).flatten(1).sum(1),
    ]
    expected = torch.stack(obd).mean(0)
    assert torch.allclose(scores, expected / expected.mean(), rtol=1e-4)
