"""Weight fake-quantization with a straight-through estimator, and packed-size accounting.

Weights of conv and linear layers are quantized symmetrically per output channel:
``scale = max|w| / (2**(bits-1) - 1)``, ``w_q = clamp(round(w / scale)) * scale``.
The rounding is bypassed in the backward pass (straight-through), so training sees
the quantization error and adapts to it. 32 bits means no quantization.
Activations stay fp32: the searched bit-width is a storage and accuracy trade-off;
on CPU PyTorch these layers still run fp32 kernels, so no speed-up is claimed.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

FULL_PRECISION = 32
QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize-dequantize `weight` (out_channels first) at `bits`, straight-through."""
    if bits >= FULL_PRECISION:
        return weight
    qmax = 2 ** (bits - 1) - 1
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale = (flat.abs().amax(dim=1).clamp_min(1e-12) / qmax).view(-1, *[1] * (weight.dim() - 1))
    quantized = torch.clamp(torch.round(weight / scale), -qmax, qmax) * scale
    return weight + (quantized - weight).detach()


class FakeQuantize(nn.Module):
    """A parametrization: the layer sees its weight quantized at `bits`."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize(weight, self.bits)


def apply_fake_quant(model: nn.Module, bits_of: dict[str, int]) -> None:
    """Parametrize the weight of every quantizable layer named in `bits_of` below 32 bits."""
    for name, module in model.named_modules():
        bits = bits_of.get(name, FULL_PRECISION)
        if isinstance(module, QUANTIZABLE) and bits < FULL_PRECISION:
            parametrize.register_parametrization(module, "weight", FakeQuantize(bits))


def fold_fake_quant(model: nn.Module) -> None:
    """Replace each fake-quant parametrization by its quantized values: the deployed form."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def packed_size_bytes(model: nn.Module, bits_of: dict[str, int]) -> int:
    """Bytes to store the model: quantized weights packed at their bits plus one fp32 scale per
    output channel; every other parameter and float buffer at fp32."""
    total_bits = 0
    for name, module in model.named_modules():
        if ".parametrizations" in f".{name}":
            continue  # a parametrization's `original` is counted once, through its owner
        bits = bits_of.get(name, FULL_PRECISION)
        for pname, tensor in _own_tensors(module):
            quantized = pname == "weight" and isinstance(module, QUANTIZABLE)
            if quantized and bits < FULL_PRECISION:
                total_bits += tensor.numel() * bits + tensor.shape[0] * 32
            else:
                total_bits += tensor.numel() * 32
    return math.ceil(total_bits / 8)


def _own_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    found: list[tuple[str, torch.Tensor]] = []
    if parametrize.is_parametrized(module):
        for pname in module.parametrizations:  # type: ignore[union-attr]
            found.append((pname, getattr(module, pname)))
    for pname, p in module.named_parameters(recurse=False):
        found.append((pname, p))
    for bname, b in module.named_buffers(recurse=False):
        if b.is_floating_point():  # skips BatchNorm's integer num_batches_tracked
            found.append((bname, b))
    return found
