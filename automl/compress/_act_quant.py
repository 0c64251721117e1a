"""8-bit activation fake-quantization at the inputs of quantized layers, with the ranges the
int8 export reuses.

ONNX Runtime's int8 QDQ form quantizes every activation that enters a convolution or a
linear layer per tensor to uint8 (asymmetric: a scale and a zero point). A student trained
without seeing that rounding loses accuracy when it is deployed; one whose layers see their
inputs quantized while it trains does not, provided the export quantizes with the same
ranges rather than recalibrating (`automl.deploy.onnx.quantize_int8`'s overrides).

`ActQuant` observes the running minimum and maximum of its input while training (exponential
moving average, as PyTorch's MovingAverageMinMaxObserver, momentum 0.01; the first batch
sets them), and quantize-dequantizes it with the scale and zero point ONNX Runtime computes
from that range (`uint8_params`); gradients pass straight through inside the range and stop
outside (`fake_quantize`: torch's `fake_quantize_per_tensor_affine` in elementwise ops). It
is the `input_quant` child of the layer it serves, called by a forward pre-hook, so it travels
in the state dict (`conv.input_quant.low`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

ATTR = "input_quant"
MOMENTUM = 0.01
QMAX = 255


def uint8_params(low: float, high: float) -> tuple[float, int]:
    """(scale, zero point) of uint8 quantization over [low, high], widened to hold 0, as ONNX
    Runtime computes them (`compute_scale_zp`, asymmetric): scale float32."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = float(torch.tensor((high - low) / QMAX, dtype=torch.float32))
    if scale == 0.0:
        scale = 1.0
    zero = round(-low / scale)
    return scale, min(max(zero, 0), QMAX)


class _FakeQuantize(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor
    ) -> torch.Tensor:
        # torch's kernel: q = zero + nearbyint(x * (1 / scale)); out = (clamp(q) - zero) * scale
        q = x * (1.0 / scale)
        q.round_().add_(zero)  # round half to even, as nearbyint
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward((q >= 0) & (q <= QMAX))
        return q.clamp_(0, QMAX).sub_(zero).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """`torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)` for float32 `x`, with
    the same values and gradient (straight through inside the range, zero outside), in
    elementwise ops: on a CPU torch's fused kernel took 6.3 ms for a (128, 64, 14, 14) tensor
    and these 1.0 ms (`benchmarks/fake_quant.py`)."""
    return _FakeQuantize.apply(x, scale, zero)


class ActQuant(nn.Module):
    """Quantize-dequantize a tensor to uint8 over its observed range (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.enabled = True  # off while exporting: the export inserts the same rounding
        # a range was observed: kept on the host so that a training step never waits for the
        # device; None: not known yet (fresh, or loaded), read once from the buffers
        self.seen: bool | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self.training:
            with torch.no_grad():
                low, high = x.detach().min().float(), x.detach().max().float()
                if self.observed:
                    low = self.low + MOMENTUM * (low - self.low)
                    high = self.high + MOMENTUM * (high - self.high)
                self.low.copy_(low)
                self.high.copy_(high)
                self.seen = True
        if not self.observed:
            return x  # never trained: nothing to quantize with yet
        scale, zero = self.tensor_params()
        # in float32: under CUDA's bfloat16 autocast the input may be bfloat16
        return fake_quantize(x.float(), scale, zero).to(x.dtype)

    @property
    def observed(self) -> bool:
        """A range has been seen (both bounds start at 0, so the first batch sets them); read
        from the buffers only while `seen` is not known."""
        if self.seen is None:
            self.seen = bool(self.high > self.low)
        return self.seen

    def params(self) -> tuple[float, int]:
        """(scale, zero point) for the range observed so far."""
        return uint8_params(float(self.low), float(self.high))

    def tensor_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`params` as tensors on the buffers' device (float32 scale, int32 zero point),
        computed there, so a training step never waits for the device: the same arithmetic
        as `uint8_params`, in float64."""
        low = self.low.double().clamp(max=0.0)
        high = self.high.double().clamp(min=0.0)
        scale = ((high - low) / QMAX).float()
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        zero = torch.round(-low / scale.double()).clamp(0, QMAX).to(torch.int32)
        return scale, zero

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.seen = None  # read from the loaded range at the next forward pass


def _quantize_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    # a module-level function, not a closure: `copy.deepcopy` of a model keeps each hook
    # pointing at the copy's own quantizer
    return (getattr(module, ATTR)(args[0]), *args[1:])


def attach_input_quant(module: nn.Module) -> ActQuant:
    """Give `module` an `input_quant` that its forward pre-hook applies to its input."""
    quant = ActQuant()
    module.add_module(ATTR, quant)
    module.register_forward_pre_hook(_quantize_input)
    return quant


def input_quant(module: nn.Module) -> ActQuant | None:
    found = getattr(module, ATTR, None)
    return found if isinstance(found, ActQuant) else None


@contextmanager
def activation_quant_off(model: nn.Module) -> Iterator[None]:
    """Every ActQuant of `model` passes its input through, inside the block (ONNX export:
    the int8 export quantizes those tensors itself, with the same ranges)."""
    quants = [m for m in model.modules() if isinstance(m, ActQuant)]
    for q in quants:
        q.enabled = False
    try:
        yield
    finally:
        for q in quants:
            q.enabled = True
