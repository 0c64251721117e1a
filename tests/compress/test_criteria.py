"""What the criteria that need more than a weight's magnitude score: synaptic strength reads
the next layer, the second-order criterion the empirical Fisher."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.func import functional_call, grad, vmap

from automl.compress._criteria import (
    SCORE,
    SynapticStrength,
    clear_scores,
    fisher_diagonal,
    get_criterion,
    known_criterion,
)
from automl.compress._l0 import open_probability, sample_gate
from automl.compress._nni import TAYLOR_STEPS


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


def test_hard_concrete_gates_are_exactly_0_or_1_as_often_as_their_formula_says():
    log_alpha = torch.tensor([-4.0, 0.0, 2.0]).repeat(20000, 1).requires_grad_(True)
    z = sample_gate(log_alpha, torch.Generator().manual_seed(0))
    assert z.min() == 0 and z.max() == 1 and ((z > 0) & (z < 1)).any()
    measured = (z > 0).float().mean(0)
    assert torch.allclose(measured, open_probability(log_alpha[0].detach()), atol=0.01)
    assert measured[0] < 0.2 < 0.5 < measured[1] < 0.9 < measured[2]
    z.sum().backward()
    assert (log_alpha.grad[:, 1] > 0).any()  # differentiable where the gate is not clamped


def test_l0_gates_close_the_channel_nothing_reads_and_leave_the_model_as_it_was():
    torch.manual_seed(0)
    model = _conv_bn_conv()
    head = nn.Sequential(model, nn.Flatten(), nn.LazyLinear(3))
    x, y = torch.randn(32, 1, 6, 6), torch.randint(0, 3, (32,))
    head(x)
    head.train()
    before = {k: v.clone() for k, v in head.state_dict().items()}
    spec = get_criterion("l0")
    spec.prepare(head, x, y)
    bn = model[1]
    gates = getattr(bn, SCORE)
    assert gates.shape == (4,) and gates[1] < 0.1 and (gates[2:] > 0.9).all()
    assert torch.equal(_scores(model, spec.make()), gates)  # one BN in the group: its gates
    assert head.training and all(p.requires_grad and p.grad is None for p in head.parameters())
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())
    clear_scores(head)
    assert not hasattr(bn, SCORE)
    # towards a target of 3 channels in 4: the weak channel 0, which the plain penalty
    # closed, stays open far more often; the one nothing reads is still the first to close
    spec.prepare(head, x, y, {bn: 0.75})
    towards = getattr(bn, SCORE)
    assert towards.argmin() == 1 and towards[0] > 0.3 > 0.1 > gates[0]
    # the magnitude criteria keep channel 1, whose BN scale is the largest
    assert _scores(model, tp.importance.MagnitudeImportance(p=2)).argmin() != 1


def test_nni_criteria_read_nnis_metric_per_filter_and_leave_the_model_untouched():
    model = _conv_bn_conv()
    params = {name: (p, p.detach().clone()) for name, p in model.named_parameters()}
    conv, bn = model[0], model[1]
    w = conv.weight.detach().flatten(1)
    expected = {
        "nni_l1": w.abs().sum(1),
        "nni_l2": w.norm(dim=1),
        "nni_fpgm": torch.cdist(w, w).sum(1),  # He et al. 2019: summed distance to the others
    }
    for name, metric in expected.items():
        spec = get_criterion(name)
        spec.prepare(model, torch.randn(2, 1, 6, 6), torch.zeros(2, dtype=torch.long), {conv: 0.5})
        assert torch.allclose(getattr(conv, SCORE), metric, rtol=1e-5), name
        assert not hasattr(model[3], SCORE)  # only the modules it was given
        # the group of conv 0: its own filters (conv and BN outputs); only the conv is scored
        assert torch.allclose(_scores(model, spec.make()), metric, rtol=1e-5), name
        clear_scores(model)
    # NNI wrapped a copy: same parameter objects, same values, no wrapper left behind
    for name, (p, value) in params.items():
        assert dict(model.named_parameters())[name] is p and torch.equal(p, value)
    assert not any(hasattr(m, "_nni_wrapper") or "forward" in vars(m) for m in model.modules())
    assert not hasattr(bn, SCORE)


def test_nni_taylor_scores_each_filter_by_nnis_squared_first_order_term():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,))
    conv = model[0]
    params = {name: (p, p.detach().clone()) for name, p in model.named_parameters()}
    # by hand: NNI's loop trains (batch statistics) on TAYLOR_STEPS mini-batches and averages
    # (w x dL/dw)^2 over them; the metric is its L1 norm per filter
    twin = copy.deepcopy(model).train()
    total = torch.zeros_like(conv.weight)
    for xs, ys in zip(x.chunk(TAYLOR_STEPS), y.chunk(TAYLOR_STEPS), strict=True):
        twin.zero_grad()
        F.cross_entropy(twin(xs), ys).backward()
        total += (twin[0].weight * twin[0].weight.grad).detach() ** 2
    expected = (total / TAYLOR_STEPS).flatten(1).sum(1)
    get_criterion("nni_taylor").prepare(model, x, y, {conv: 0.5})
    assert torch.allclose(getattr(conv, SCORE), expected, rtol=1e-4)
    assert len(set(expected.tolist())) == 4  # the filters are told apart
    for name, (p, value) in params.items():  # NNI trained a copy, at a learning rate of 0
        assert dict(model.named_parameters())[name] is p and torch.equal(p, value)
    assert model[1].training is False and not hasattr(model[1], SCORE)


def test_an_nni_criterion_without_nni_says_how_to_install_it(monkeypatch):
    from automl.compress import _criteria

    assert known_criterion("nni_l1") == "nni_l1"  # installed here, with the dev extra
    monkeypatch.setattr(_criteria, "nni_installed", lambda: False)
    with pytest.raises(ValueError, match=r"'nni_l1' needs NNI, an optional extra: pip install"):
        known_criterion("nni_l1")
    assert known_criterion("l1") == "l1"  # the others do not need it
