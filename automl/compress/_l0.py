"""L0 gates (Louizos, Welling and Kingma 2018, "Learning Sparse Neural Networks through L0
Regularization") as a channel criterion: a hard-concrete gate on every output channel of every
BatchNorm, trained with an L0 penalty by a short distillation of the network to its own
outputs; the channels whose gates are least likely to stay open score lowest, and the pruner
removes them physically at the architecture's ratio.

A hard-concrete gate of parameter log_alpha draws u ~ U(0, 1) and

    s = sigmoid((log u - log(1 - u) + log_alpha) / BETA)
    z = clamp(s * (ZETA - GAMMA) + GAMMA, 0, 1)

so that z is exactly 0 or 1 with non-zero probability, and the expected L0 norm, the
probability that z is not 0, is differentiable:

    P(z != 0) = sigmoid(log_alpha - BETA * log(-GAMMA / ZETA))

(the paper's equations 10 to 13 and its constants BETA = 2/3, GAMMA = -0.1, ZETA = 1.1).

Three departures, for a criterion that scores a trained network in seconds rather than
trains one: the weights stay frozen and only the gates learn (the weights then distil as
every student's do); the target is the ungated network's own logits on the calibration batch
(KL at temperature 1), so a gate closes where the network's function does not need it; and
where the architecture's ratios are known (`keep`), the penalty is not the expected L0 norm
itself but its excess over the target, sum_bn relu(mean P(open) - keep_bn)**2, a fixed
quadratic term of the Lagrangian that Wang et al. (2020, "Structured Pruning of Large
Language Models") use to reach a target sparsity. With the plain mean P(open), the KL stops
the gates at a network-wide sparsity of its own (on the Fashion-MNIST teacher, most gates of
every stage stayed above 0.98), and ranking a quarter of a stage's channels among gates that
close nearly alike was no better than random channels (benchmarks/criteria.py).
BatchNorm stays in eval mode: its running statistics are the teacher's and stay so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1
INIT_LOG_ALPHA = 3.0  # P(open) 0.999 and a mean gate of about 0.97: the teacher as it was
STEPS = 100
LR = 0.1
PENALTY = 0.5  # weight of the L0 term beside the KL, which starts at 0 (5 did worse: gates
# closed before the KL told them apart)


def sample_gate(log_alpha: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One hard-concrete draw per gate, differentiable in `log_alpha`."""
    u = torch.rand(log_alpha.shape, generator=generator).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((u.log() - (-u).log1p() + log_alpha) / BETA)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def open_probability(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(z != 0) per gate: the expected L0 norm's terms."""
    return torch.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))


def train_gates(
    model: nn.Module,
    inputs: torch.Tensor,
    keep: Mapping[nn.Module, float] | None = None,
    steps: int = STEPS,
    penalty: float = PENALTY,
    seed: int = 0,
) -> dict[nn.BatchNorm2d, torch.Tensor]:
    """Each BatchNorm2d of `model` -> the open probability of its channels' gates after
    `steps` of Adam on KL(gated || ungated logits) + `penalty` * the L0 term: the mean
    P(open) over every gate, or with `keep` (the fraction of its channels a module keeps;
    1 where it is missing) the squared excess of each BatchNorm's mean P(open) over its
    target. `model` is left as it was: weights, running statistics, mode and gradients."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return {}
    was_training = model.training
    model.eval()
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    with torch.no_grad():
        target = F.log_softmax(model(inputs).float(), dim=-1)
    log_alpha = {bn: torch.full((bn.num_features,), INIT_LOG_ALPHA) for bn in norms}
    for value in log_alpha.values():
        value.requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)

    def gate(bn: nn.Module, _args: object, out: torch.Tensor) -> torch.Tensor:
        z = sample_gate(log_alpha[bn], generator).to(out.device, out.dtype)
        return out * z.view(1, -1, 1, 1)

    hooks = [bn.register_forward_hook(gate) for bn in norms]
    optimizer = torch.optim.Adam(list(log_alpha.values()), lr=LR)
    count = sum(bn.num_features for bn in norms)
    try:
        for _ in range(steps):
            log_p = F.log_softmax(model(inputs).float(), dim=-1)
            kl = F.kl_div(log_p, target, reduction="batchmean", log_target=True)
            if keep:
                l0 = sum(
                    F.relu(open_probability(a).mean() - keep.get(bn, 1.0)) ** 2
                    for bn, a in log_alpha.items()
                )
            else:
                l0 = sum(open_probability(a).sum() for a in log_alpha.values()) / count
            optimizer.zero_grad()
            (kl + penalty * l0).backward()
            optimizer.step()
    finally:
        for hook in hooks:
            hook.remove()
        for p, wanted in frozen:
            p.requires_grad_(wanted)
        model.train(was_training)
    return {bn: open_probability(a.detach()) for bn, a in log_alpha.items()}
