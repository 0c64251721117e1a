"""The search-space config (YAML `search_space:`) and its binding to a teacher's stages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from automl.pruning import list_criteria
from automl.stages import Stage
from search_spaces.architecture import Architecture, StageArchitecture
from search_spaces.dimensions import (
    ChoiceDim,
    Dimension,
    FixedDim,
    FloatDim,
    IntDim,
    Suggester,
)

StageDimension = Dimension | Annotated[list[Dimension], Field(min_length=1)]


class SearchSpaceConfig(BaseModel):
    """What the search may vary. Stage dimensions take one spec for every stage, or a list
    with one spec per stage. `name` picks a registered preset whose values fill the
    fields the YAML leaves out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "stagewise"
    channel_keep: StageDimension = FloatDim(low=0.25, high=1.0, step=0.125)
    blocks: StageDimension = IntDim()
    bits: StageDimension = ChoiceDim(values=[4, 6, 8, 32])
    shared_stages: bool = Field(
        default=False, description="one channel_keep and one bits value for every stage"
    )
    stem_head_bits: Dimension = FixedDim(value=8)
    criterion: Dimension = ChoiceDim(values=["l2", "bn_scale", "taylor", "random"])
    kd_temperature: Dimension = FloatDim(low=1.0, high=8.0)
    kd_alpha: Dimension = FloatDim(low=0.3, high=1.0)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        name = raw.get("name", "stagewise")
        presets = _presets()
        if name not in presets:
            raise ValueError(f"unknown search space {name!r}; registered: {sorted(presets)}")
        return {**presets[name], **raw}

    @model_validator(mode="after")
    def _check_values(self) -> SearchSpaceConfig:
        _check(self.channel_keep, "channel_keep", lambda v: 0 < v <= 1, "in (0, 1]")
        _check(self.bits, "bits", lambda v: isinstance(v, int) and 2 <= v <= 32, "ints in [2, 32]")
        _check(self.stem_head_bits, "stem_head_bits", lambda v: v in (4, 6, 8, 32), "4, 6, 8, 32")
        criteria = list_criteria()
        _check(self.criterion, "criterion", lambda v: v in criteria, f"one of {criteria}")
        _check(self.kd_temperature, "kd_temperature", lambda v: v > 0, "> 0")
        _check(self.kd_alpha, "kd_alpha", lambda v: 0 <= v <= 1, "in [0, 1]")
        for dim in _as_list(self.blocks):
            if not isinstance(dim, IntDim | FixedDim):
                raise ValueError("blocks: use an int range or a fixed int")
        return self

    def bind(self, stages: list[Stage]) -> BoundSearchSpace:
        """Resolve per-stage dimensions against a teacher's stages; errors name the stage."""
        return BoundSearchSpace(self, stages)


def _as_list(dim: Any) -> list[Any]:
    return list(dim) if isinstance(dim, list) else [dim]


def _check(dim: Any, field: str, ok: Callable[[Any], bool], allowed: str) -> None:
    for d in _as_list(dim):
        bad = [v for v in d.grid() if not ok(v)]
        if bad:
            raise ValueError(f"{field}: values must be {allowed}, got {bad}")


class BoundSearchSpace:
    """A SearchSpaceConfig resolved against the stages of one teacher; it samples Architectures."""

    def __init__(self, config: SearchSpaceConfig, stages: list[Stage]) -> None:
        self.config = config
        self.stages = stages
        n = len(stages)
        self.channel_keep = _per_stage(config.channel_keep, n, "channel_keep")
        self.bits = _per_stage(config.bits, n, "bits")
        self.blocks = [
            _bind_blocks(dim, stage)
            for dim, stage in zip(_per_stage(config.blocks, n, "blocks"), stages, strict=True)
        ]

    def sample(self, s: Suggester) -> Architecture:
        """Draw one Architecture; parameter names are `stage{i}.<dim>` (or `all.<dim>` when
        stages are shared) and the plain field names for the rest."""
        c = self.config
        stage_archs = []
        for i in range(len(self.stages)):
            key = "all" if c.shared_stages else f"stage{i}"
            j = 0 if c.shared_stages else i
            stage_archs.append(
                StageArchitecture(
                    channel_keep=self.channel_keep[j].sample(f"{key}.channel_keep", s),
                    blocks=self.blocks[i].sample(f"stage{i}.blocks", s),
                    bits=self.bits[j].sample(f"{key}.bits", s),
                )
            )
        return Architecture(
            stages=stage_archs,
            stem_head_bits=c.stem_head_bits.sample("stem_head_bits", s),
            criterion=c.criterion.sample("criterion", s),
            kd_temperature=c.kd_temperature.sample("kd_temperature", s),
            kd_alpha=c.kd_alpha.sample("kd_alpha", s),
        )

    def describe(self) -> list[dict[str, Any]]:
        """One row per stage: name, channels, blocks range; for `teacher` and the README."""
        return [
            {
                "stage": s.name,
                "channels": s.channels,
                "reduction": s.reduction,
                "blocks": f"{b.low}..{b.high}" if isinstance(b, IntDim) else str(b.value),
            }
            for s, b in zip(self.stages, self.blocks, strict=True)
        ]


def _per_stage(dim: Any, n: int, field: str) -> list[Any]:
    if not isinstance(dim, list):
        return [dim] * n
    if len(dim) != n:
        raise ValueError(
            f"search_space.{field}: the teacher has {n} stages, the list has {len(dim)}"
        )
    return list(dim)


def _bind_blocks(dim: IntDim | FixedDim, stage: Stage) -> IntDim | FixedDim:
    lo, hi = stage.min_blocks, stage.num_blocks
    if isinstance(dim, FixedDim):
        values = [dim.value]
    else:
        dim = IntDim(
            low=lo if dim.low is None else dim.low,
            high=hi if dim.high is None else dim.high,
            step=dim.step,
        )
        values = [dim.low, dim.high]
    bad = [v for v in values if not (isinstance(v, int) and lo <= v <= hi)]
    if bad:
        raise ValueError(
            f"search_space.blocks: stage {stage.index} ({stage.name}) keeps between {lo} and {hi} "
            f"blocks, got {bad}"
        )
    return dim


def _presets() -> dict[str, dict[str, Any]]:
    from search_spaces import SEARCH_SPACES

    return SEARCH_SPACES
