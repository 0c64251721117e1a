"""Straight-through weight fake-quantization, per output channel."""

from __future__ import annotations

import pytest
import torch

from automl.compress.weight_quant import fake_quantize


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
