from __future__ import annotations

import pytest
import torch
from torch import nn

from automl.quantization import (
    apply_fake_quant,
    fake_quantize,
    fold_fake_quant,
    packed_size_bytes,
)


@pytest.mark.parametrize("bits", [4, 6, 8])
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


def test_packed_size_counts_bits_scales_and_fp32_rest():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 3))
    bits = {"0": 4, "3": 8}
    conv = (4 * 2 * 9 * 4 + 4 * 32 + 4 * 32) / 8  # weight at 4 bits, scales, bias fp32
    bn = (4 * 4 * 32) / 8  # weight, bias, running mean and var; num_batches_tracked skipped
    fc = (3 * 4 * 8 + 3 * 32 + 3 * 32) / 8
    assert packed_size_bytes(model, bits) == conv + bn + fc
    apply_fake_quant(model, bits)
    assert packed_size_bytes(model, bits) == conv + bn + fc  # the parametrization counts once


def test_folding_keeps_the_quantized_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    apply_fake_quant(model, {"0": 4, "3": 6})
    x = torch.randn(3, 1, 8, 8)
    before = model(x)
    fold_fake_quant(model)
    assert not hasattr(model[0], "parametrizations")
    assert torch.allclose(model(x), before, atol=1e-6)
