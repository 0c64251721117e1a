"""Weight fake-quantization per output channel: min-max scales and learned steps (LSQ),
straight-through, and the scales the int8 export recovers from the quantized weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from automl.compress.weight_quant import LearnedStep, code_scales, fake_quantize, minmax_scale


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_each_output_channel_has_at_most_2_to_the_bits_levels(bits):
    w = torch.randn(8, 3, 3, 3)
    q = fake_quantize(w, bits)
    for row in q.reshape(8, -1):
        assert len(torch.unique(row)) <= 2**bits - 1
    assert (q - w).abs().max() <= w.abs().amax() / (2 ** (bits - 1) - 1)


def test_32_bits_is_identity_and_gradient_is_straight_through():
    w = torch.randn(4, 5, requires_grad=True)
    assert fake_quantize(w, 32) is w
    fake_quantize(w, 4).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def _lsq(weight: torch.Tensor, bits: int):
    """A layer of `weight` under a learned-step parametrization."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    layer.weight.data.copy_(weight)
    parametrize.register_parametrization(layer, "weight", LearnedStep(bits, weight.shape[0]))
    return layer


def test_a_learned_step_starts_at_the_min_max_scale_of_the_weights_it_first_sees():
    w = torch.randn(6, 20)
    layer = _lsq(w, 4)
    assert torch.allclose(layer.weight, fake_quantize(w, 4))
    layer = _lsq(w, 4)
    step = layer.parametrizations.weight[0]
    step.started = False  # as `apply` leaves it: weights set after it (`init`) come first
    layer.parametrizations.weight.original.data.mul_(3.0)
    codes = layer.weight / minmax_scale(3.0 * w, 4)
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert torch.allclose(step.log_step.exp(), minmax_scale(3.0 * w, 4).flatten())


def test_the_step_gradient_is_lsq_s():
    """d w_q / d s = round(w/s) - w/s inside the range, +-qmax where w clips (Esser et al.)."""
    bits, qmax = 4, 7
    w = torch.tensor([[0.26, -0.74, 0.46, 3.0, -3.0]])
    layer = _lsq(w, bits)
    step = layer.parametrizations.weight[0]
    with torch.no_grad():
        step.log_step.fill_(math.log(0.2))  # 3.0 and -3.0 clip at +-7 codes
    layer.weight.sum().backward()
    v = w / 0.2
    inside = v.abs() < qmax
    expected = torch.where(inside, v.round() - v, torch.sign(v) * qmax).sum()
    assert float(step.log_step.grad) == pytest.approx(0.2 * float(expected), rel=1e-5)
    grad_w = layer.parametrizations.weight.original.grad
    assert torch.equal(grad_w, inside.float())  # straight through inside, zero where clipped


def test_a_learned_step_lowers_the_quantization_error_that_min_max_leaves():
    """Heavy-tailed weights: min-max stretches the scale to the outlier, a learned step clips
    it and rounds the rest finer."""
    torch.manual_seed(0)
    w = torch.randn(8, 256)
    w[:, 0] = 8.0  # one outlier per channel
    layer = _lsq(w, 4)
    minmax_error = float(((fake_quantize(w, 4) - w) ** 2).mean())
    optimizer = torch.optim.Adam([layer.parametrizations.weight[0].log_step], lr=0.02)
    for _ in range(200):
        optimizer.zero_grad()
        ((layer.weight - w) ** 2).mean().backward()
        optimizer.step()
    learned_error = float(((layer.weight.detach() - w) ** 2).mean())
    assert learned_error < 0.75 * minmax_error  # the best step for these weights: 0.70


def test_a_loaded_step_is_kept():
    w = torch.randn(4, 10)
    trained = _lsq(w, 4)
    with torch.no_grad():
        trained.parametrizations.weight[0].log_step.add_(0.3)
    again = _lsq(torch.randn(4, 10), 4)
    again.parametrizations.weight[0].started = False
    again.load_state_dict(trained.state_dict())
    assert torch.equal(again.weight, trained.weight)


@pytest.mark.parametrize("bits", [4, 8])
def test_code_scales_recover_integer_codes_through_batch_norm_folding(bits):
    """Channels with learned steps whose largest code is below the maximum, scaled per channel
    by a folding factor (negative too): the recovered scales give integer codes, which
    dequantize to the same weights."""
    torch.manual_seed(1)
    qmax = 2 ** (bits - 1) - 1
    codes = torch.randint(-qmax, qmax + 1, (6, 3, 3, 3)).float()
    codes[1] = codes[1].clamp(-3, 3)  # a largest code of 3
    codes[2] = 2 * codes[2].clamp(-2, 2)  # even codes only
    codes[3] = 0.0  # an all-zero channel
    step = torch.rand(6, 1, 1, 1) * 0.1 + 0.01
    fold = torch.tensor([1.7, -0.4, 2.5, 1.0, 0.9, -3.0]).view(6, 1, 1, 1)
    weight = (codes * step * fold).numpy()
    scales = code_scales(weight, bits)
    assert scales is not None
    recovered = weight.reshape(6, -1) / scales[:, None]
    assert np.abs(recovered - np.rint(recovered)).max() < 1e-3
    assert np.abs(np.rint(recovered)).max() <= qmax
    assert np.allclose(np.rint(recovered) * scales[:, None], weight.reshape(6, -1), rtol=1e-6)


def test_code_scales_refuse_a_weight_that_was_not_quantized():
    assert code_scales(np.random.default_rng(0).normal(size=(4, 50)), 4) is None
