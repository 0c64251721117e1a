"""Weight quantization: each stage's conv and linear weights at its bit-width, the stem and head
at `stem_head_bits`; 32 bits means none.

Weights are quantized symmetrically per output channel, ``scale = max|w| / (2**(bits-1) - 1)``,
``w_q = clamp(round(w / scale)) * scale``, through a parametrization whose rounding the
backward pass bypasses (straight-through), so distillation sees the quantization error and
adapts to it. Activations stay fp32. Packed, a weight costs its bits plus one fp32 scale per
output channel. PyTorch runs these layers with fp32 kernels, so no speed-up is claimed there;
the deployed form runs int8 when every weight is at most 8 bits.

`act_bits: 8` (the search's default) makes training see the deployed form's activations too:
where the export is int8 (every weight at most 8 bits), each quantized layer's input is
fake-quantized to uint8 over its observed range (`_act_quant`), and the export quantizes with
those ranges and the trained weight scales instead of recalibrating, so ONNX Runtime computes
what was trained. 32 (the default of architectures saved before it existed) trains with fp32
activations and leaves the export to calibrate.

`quantizer` chooses how a weight's scale is set:
- `minmax` (the default): recomputed from the weight at every step, as above.
- `lsq`: learned, one step size per output channel, as in LSQ (Esser et al. 2020, "Learned
  Step Size Quantization"): ``w_q = round(clamp(w / s, -qmax, qmax)) * s`` with the rounding
  straight-through, so the step's gradient is ``round(w/s) - w/s`` inside the range and
  ``±qmax`` where the weight clips; weights clip instead of stretching the scale. Two
  departures from the paper, both for distillations of a few epochs under AdamW: the step
  starts at the min-max scale (where `minmax` stays), not at ``2 mean|w| / sqrt(qmax)``,
  which at 8 bits spans ±18 standard deviations of a Gaussian weight; and it is learned as
  its logarithm, so AdamW moves it by a fraction of itself per step (AdamW normalises each
  gradient's magnitude, which the paper's gradient scale 1/sqrt(N qmax) was for under SGD).
The learned step lives only while the student trains: the deployed weight is the codes times
the step, and the int8 export recovers that scale from the weight itself
(`code_scales`), as does the packed file.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from automl.compress import register_technique
from automl.compress._act_quant import attach_input_quant
from automl.compress._base import (
    BuildContext,
    DeployForm,
    PerStage,
    Student,
    Technique,
    TechniqueParams,
    TensorCost,
)
from automl.stages import Stage, stage_membership

FULL_PRECISION = 32
WEIGHT_BITS = "weight_bits"  # set on each quantized layer: its bit-width, for the int8 export
QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
Bits = Annotated[int, Field(ge=2, le=FULL_PRECISION, description="weight bit-width")]


class WeightQuantParams(TechniqueParams):
    bits: PerStage[Bits]
    stem_head_bits: Bits = FULL_PRECISION
    act_bits: Literal[8, 32] = FULL_PRECISION
    quantizer: Literal["minmax", "lsq"] = "minmax"

    @property
    def int8_activations(self) -> bool:
        """Activations fake-quantized while training: asked for, and the export is int8."""
        return self.act_bits == 8 and max(self.stem_head_bits, *self.bits) <= 8


@register_technique
class WeightQuant(Technique):
    name = "weight_quant"
    order = 40
    Params = WeightQuantParams
    space: ClassVar[dict[str, Any]] = {
        "bits": {"type": "choice", "values": [4, 6, 8, 32]},
        "stem_head_bits": 8,
        "act_bits": 8,
        "quantizer": "minmax",
    }

    def apply(self, student: Student, params: WeightQuantParams, ctx: BuildContext) -> None:
        for _, module, bits in _quantized(student, params):
            quantizer = (
                LearnedStep(bits, module.weight.shape[0])
                if params.quantizer == "lsq"
                else FakeQuantize(bits)
            )
            parametrize.register_parametrization(module, "weight", quantizer)
            if isinstance(quantizer, LearnedStep):
                quantizer.started = False  # registering ran it once on the weight as it is now
        self.restore(student.model, student.stages, params)

    def restore(self, model: nn.Module, stages: list[Stage], params: WeightQuantParams) -> None:
        for _, module, bits in _quantized(Student(model, stages), params):
            setattr(module, WEIGHT_BITS, bits)
            if params.int8_activations:
                attach_input_quant(module)

    def account(
        self, student: Student, params: WeightQuantParams, costs: dict[str, TensorCost]
    ) -> None:
        for name, module, bits in _quantized(student, params):
            cost = costs[f"{name}.weight"]
            cost.bits = bits
            cost.overhead_bits += module.weight.shape[0] * 32  # one fp32 scale per channel

    def deploy_form(self, params: WeightQuantParams) -> DeployForm:
        widths = [params.stem_head_bits, *params.bits]
        notes = ()
        if min(widths) < 8:
            notes = (
                "Weight bit-widths below 8 shrink the packed size only: ONNX Runtime has no "
                "sub-byte kernels, so the ONNX file stores those weights at 8 bits (int8 form) "
                "or 32 (fp32 form).",
            )
        return DeployForm(weight_bits=max(widths), notes=notes)

    def describe(self, params: WeightQuantParams) -> dict[str, str]:
        return {
            "weight bits": "/".join(str(b) for b in params.bits),
            "stem/head bits": str(params.stem_head_bits),
            "activations": "uint8, trained ranges" if params.int8_activations else "fp32",
            "weight scales": "learned (LSQ)" if params.quantizer == "lsq" else "min-max",
        }

    def ladder(self, stages: list[Stage]) -> list[WeightQuantParams]:
        return [
            WeightQuantParams(bits=[b] * len(stages), stem_head_bits=b, act_bits=8, quantizer=q)
            for b, q in ((32, "minmax"), (8, "minmax"), (4, "lsq"))
        ]


def _quantized(student: Student, params: WeightQuantParams) -> list[tuple[str, nn.Module, int]]:
    """(name, module, bits) of every quantizable layer below 32 bits: its stage's bits, or
    `stem_head_bits` outside every stage."""
    found = []
    membership = stage_membership(student.model, student.stages)
    for name, module in student.model.named_modules():
        if name not in membership or not isinstance(module, QUANTIZABLE):
            continue
        stage = membership[name]
        bits = params.stem_head_bits if stage is None else params.bits[stage]
        if bits < FULL_PRECISION:
            found.append((name, module, bits))
    return found


def minmax_scale(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per output channel, max|w| / (2^(bits-1) - 1), shaped to broadcast over `weight`."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp_min(1e-12) / (2 ** (bits - 1) - 1)
    return scale.view(-1, *[1] * (weight.dim() - 1))


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize-dequantize `weight` (out_channels first) at `bits`, straight-through."""
    if bits >= FULL_PRECISION:
        return weight
    qmax = 2 ** (bits - 1) - 1
    scale = minmax_scale(weight, bits)
    quantized = torch.clamp(torch.round(weight / scale), -qmax, qmax) * scale
    return weight + (quantized - weight).detach()


class FakeQuantize(nn.Module):
    """A parametrization: the layer sees its weight quantized at `bits`."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize(weight, self.bits)


class LearnedStep(nn.Module):
    """A parametrization: the layer sees its weight quantized at `bits` with a learned step
    per output channel (LSQ; module docstring). The step starts at the min-max scale of the
    first weight it sees, so a technique that sets the weights after this one (`init`) sets
    them before the step is chosen; a step loaded from a state dict is kept."""

    def __init__(self, bits: int, channels: int) -> None:
        super().__init__()
        self.bits = bits
        self.log_step = nn.Parameter(torch.zeros(channels))
        self.started = False

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        qmax = 2 ** (self.bits - 1) - 1
        if not self.started:
            with torch.no_grad():
                self.log_step.copy_(minmax_scale(weight, self.bits).flatten().log())
            self.started = True
        step = self.log_step.exp().view(-1, *[1] * (weight.dim() - 1))
        scaled = torch.clamp(weight / step, -qmax, qmax)
        return (scaled + (scaled.round() - scaled).detach()) * step

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self.started = True
        super()._load_from_state_dict(*args, **kwargs)


def code_scales(weight: np.ndarray, bits: int, tolerance: float = 1e-3) -> np.ndarray | None:
    """Per output channel of a fake-quantized `weight` (batch norm folded in or not), a scale
    at which every value is an integer code of magnitude at most 2^(bits-1) - 1, so int8 holds
    exactly what was trained; None when a channel has none (the weight was not quantized).

    A channel trained at step s with largest code M is (codes) * s times one folding factor,
    so the scale max|w| / M fits. M is the bit-width's maximum under min-max scales and may be
    less under learned ones; it is searched from the maximum down, at up to 8 bits (at more,
    only the maximum is tried: a search over 2^15 codes costs minutes, and rounding again to
    the min-max scale moves a 16-bit weight by at most max|w| / 65534). Any fitting scale
    gives the same dequantized weights. A wrong one leaves codes at least 1/M from an integer,
    far above float32's error, so `tolerance` (in codes) cannot accept it."""
    qmax = 2 ** (bits - 1) - 1
    lowest = 1 if bits <= 8 else qmax
    flat = weight.reshape(weight.shape[0], -1).astype(np.float64)
    largest = np.abs(flat).max(axis=1)
    scales = np.ones(len(flat))
    todo = largest > 0
    for top in range(qmax, lowest - 1, -1):
        if not todo.any():
            break
        rows = np.flatnonzero(todo)
        step = largest[rows] / top
        codes = flat[rows] / step[:, None]
        fits = np.abs(codes - np.rint(codes)).max(axis=1) <= tolerance
        scales[rows[fits]] = step[fits]
        todo[rows[fits]] = False
    return None if todo.any() else scales
