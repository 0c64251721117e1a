"""The contract every compression technique meets; each technique is one module of this package.

A technique is a subclass of `Technique` decorated with `register_technique`:

- `name`: its registry key, the word `search_space.techniques` lists.
- `order`: when `build_student` applies it, lowest first. Structure before weights: depth 10,
  channels 20, sparsity 30, quantization 40.
- `Params`: a pydantic model of the values one architecture takes. A field annotated
  `PerStage[T]` holds one T per stage of the teacher; every other field is global. The
  annotations say which values are allowed, and a search space's dimensions are checked
  against them. Field names are Optuna parameter names and trials.csv columns, so they are
  unique across techniques.
- `space`: the default search dimension of every `Params` field, written as in YAML.
- `stage_range(field, stage)`: the (lowest, highest) value one stage of the teacher allows in a
  per-stage field, or None when every stage allows what `Params` allows (the default). An int
  dimension that omits a bound takes the stage's own, and architectures are checked against it.
- `apply(student, params, ctx)`: changes the student in place; the teacher is never touched.
- `restore(model, stages, params)`: redoes on a fresh teacher-shaped model, without data, what a
  state dict cannot express (dropped blocks), so that a saved student's weights load into it.
- `account(student, params, costs)`: how the deployed student stores its tensors; a technique
  rewrites the entry of each tensor it stores differently (fewer values, fewer bits, scales or
  indices added). Entries compose, so sparsity and quantization of one weight both count.
- `during_training(student, params)`: step hooks, each called as `hook(step, total_steps)`
  after every optimizer step of the student's distillation (step counts from 1), for a
  technique whose compression moves while the student trains (an iterative sparsity
  schedule, dynamic sparse training).
- `finish(student, params)`: after the student's training (and on a copy before it, for the
  deployed shapes that latency and MACs are measured on), what a technique left until the
  end: channels an iterative schedule masked are removed physically. It may `fold` the
  model (folding is idempotent); the builder folds what is left afterwards.
- `deploy_form(params)`: what the deployed ONNX form must keep.
- `describe(params)`: short labelled values for the report and the model card.
- `ladder(stages)`: settings from the mildest to the strongest compression; the contract suite
  checks that the packed size never rises along it, and falls, unless `compresses` is False
  (a technique that changes how a student starts or trains, not what it stores: `init`).

`stage_range`, `restore`, `account`, `during_training` and `finish` default to nothing, which
fits a technique whose result a state dict holds, whose tensors are stored dense at fp32 and
which does not move during training; the rest must be written.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from torch import nn
from torch.nn.utils import parametrize

if TYPE_CHECKING:
    from automl.stages import Stage

T = TypeVar("T")
StepHook = Callable[[int, int], None]  # (step, total_steps), after each optimizer step


@dataclass(frozen=True)
class StageField:
    """Marks a `Params` field as per stage. `shareable`: with `search_space.shared_stages`, one
    sampled value serves every stage (false where stages differ in what they allow)."""

    shareable: bool = True


PerStage = Annotated[list[T], StageField()]
"""One value per stage of the teacher, e.g. `channel_keep: PerStage[float]`."""


class TechniqueParams(BaseModel):
    """Base of every technique's `Params`: strict about unknown keys, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Student:
    """A student while it is built: the model (a copy of the teacher) and the teacher's stages,
    which module paths still name after blocks are dropped and channels removed.

    `replays`: a technique that changes the structure appends a function that makes the same
    change to another teacher-shaped model (the same blocks dropped, the same channels
    removed), so that weights from elsewhere (the teacher early in its training, a fresh
    initialisation) can be given to the student, tensor by tensor.

    `context`: what it was built with, for a technique that changes it again later (a
    schedule that scores channels on the calibration batch while the student trains)."""

    model: nn.Module
    stages: list[Stage]
    replays: list[Callable[[nn.Module], None]] = field(default_factory=list)
    context: BuildContext | None = None


@dataclass(frozen=True)
class BuildContext:
    """What building may use besides the architecture: a labelled batch of training images,
    (inputs (B, C, H, W), labels (B,)), to trace the model and to score gradient criteria;
    the teacher the student was copied from; and the teacher's weights early in its training
    (`rewind`, a state dict of the teacher's shape), when its cache holds them."""

    calibration: tuple[torch.Tensor, torch.Tensor]
    teacher: nn.Module | None = None
    rewind: dict[str, torch.Tensor] | None = None


@dataclass
class TensorCost:
    """How one tensor is stored once deployed: `values` numbers of `bits` each, plus
    `overhead_bits` (quantization scales, sparse indices). Fewer `values` than the tensor
    holds means only its non-zeros are stored, with their positions (`position_bits`);
    `bits` below 32 means symmetric integer codes with one fp32 scale per output channel.
    The packed student file writes every tensor so, which keeps the figure honest."""

    values: int
    bits: int = 32
    overhead_bits: int = 0

    @property
    def total_bits(self) -> int:
        return self.values * self.bits + self.overhead_bits


@dataclass(frozen=True)
class DeployForm:
    """What the deployed form must keep. `weight_bits`: the widest weight bit-width the
    technique leaves (None: it does not quantize). `notes`: plain statements for the card."""

    weight_bits: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def combine_forms(forms: Iterable[DeployForm]) -> DeployForm:
    """The form of a student compressed by several techniques: the widest weight bit-width any
    of them leaves (32 when none quantizes) and every note."""
    forms = list(forms)
    bits = [f.weight_bits for f in forms if f.weight_bits is not None]
    notes = tuple(n for f in forms for n in f.notes)
    return DeployForm(max(bits) if bits else 32, notes)


def onnx_format(form: DeployForm) -> str:
    """'int8' (ONNX Runtime QDQ) when every weight is at most 8 bits, else 'fp32'."""
    return "int8" if form.weight_bits is not None and form.weight_bits <= 8 else "fp32"


class Technique(ABC):
    """A compression technique; the module docstring states the contract."""

    name: ClassVar[str]
    order: ClassVar[int]
    Params: ClassVar[type[TechniqueParams]]
    space: ClassVar[dict[str, Any]]
    compresses: ClassVar[bool] = True  # False: it changes how a student trains, not its size

    @classmethod
    def stage_fields(cls) -> list[str]:
        return [n for n, f in cls.Params.model_fields.items() if _stage_marker(f.metadata)]

    @classmethod
    def global_fields(cls) -> list[str]:
        return [n for n, f in cls.Params.model_fields.items() if not _stage_marker(f.metadata)]

    @classmethod
    def shareable(cls, field_name: str) -> bool:
        marker = _stage_marker(cls.Params.model_fields[field_name].metadata)
        return marker is not None and marker.shareable

    @classmethod
    def check_values(cls, field_name: str, values: list[Any]) -> None:
        """Raise ValueError naming the first of `values` that `field_name` does not allow (each
        one stage's value for a per-stage field). Values must have the field's type already."""
        per_stage = field_name in cls.stage_fields()
        check_field_values(cls.Params.model_fields[field_name], field_name, values, per_stage)

    def stage_range(self, field_name: str, stage: Stage) -> tuple[Any, Any] | None:
        return None

    @abstractmethod
    def apply(self, student: Student, params: Any, ctx: BuildContext) -> None: ...

    def restore(self, model: nn.Module, stages: list[Stage], params: Any) -> None:
        return None

    def account(self, student: Student, params: Any, costs: dict[str, TensorCost]) -> None:
        return None

    def during_training(self, student: Student, params: Any) -> list[StepHook]:
        return []

    def finish(self, student: Student, params: Any) -> None:
        return None

    @abstractmethod
    def deploy_form(self, params: Any) -> DeployForm: ...

    @abstractmethod
    def describe(self, params: Any) -> dict[str, str]: ...

    @abstractmethod
    def ladder(self, stages: list[Stage]) -> list[Any]: ...


def check_field_values(info: FieldInfo, name: str, values: list[Any], per_stage: bool) -> None:
    """Raise ValueError naming the first of `values` that a pydantic field does not allow, with
    pydantic's reason. Types are strict: 1.5 is no int, and neither is 1.0. For a per-stage
    field (a list of one value per stage) each value is checked as one stage's."""
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    adapter = TypeAdapter(annotation if per_stage else list[annotation])  # type: ignore[valid-type]
    try:
        adapter.validate_python(list(values), strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        bad = values[first["loc"][0]] if first["loc"] else values
        reason = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"{name}: {bad!r} is not allowed ({reason})") from None


def _stage_marker(metadata: list[Any]) -> StageField | None:
    return next((m for m in metadata if isinstance(m, StageField)), None)


def position_bits(numel: int, nonzeros: int) -> int:
    """Bits that say where the non-zeros of a sparse tensor of `numel` values sit: a bitmap (a
    bit per value) or a list of indices of ceil(log2 numel) bits each, whichever is smaller.
    The packed student file (`automl.student.packed`) stores them so."""
    return min(numel, nonzeros * index_bits(numel))


def index_bits(numel: int) -> int:
    """Bits of one index into a tensor of `numel` values."""
    return max(1, math.ceil(math.log2(numel))) if numel > 1 else 1


def packed_bytes(costs: dict[str, TensorCost]) -> int:
    return math.ceil(sum(c.total_bits for c in costs.values()) / 8)


def fold(model: nn.Module) -> None:
    """Replace every parametrization (fake-quant, masks) by the values it gives: the deployed
    weights, plain tensors again.

    Done by hand rather than with `parametrize.remove_parametrizations`, which deletes the
    property from the module's parametrized class; `copy.deepcopy` shares that class between
    a model and its copy, so folding a copy would break the original."""
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        names = list(module.parametrizations)  # type: ignore[union-attr]
        with torch.no_grad():
            values = {
                n: (getattr(module, n).detach().clone(), module.parametrizations[n].original)
                for n in names
            }
        del module.parametrizations
        module.__class__ = module.__class__.__bases__[0]  # the class it had before
        for n, (value, original) in values.items():
            module.register_parameter(n, nn.Parameter(value, requires_grad=original.requires_grad))
