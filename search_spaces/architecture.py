"""An Architecture: one point of a search space, everything needed to build and train a student."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class StageArchitecture(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel_keep: Annotated[float, Field(gt=0, le=1, description="fraction of channels kept")]
    blocks: Annotated[int, Field(ge=1, description="blocks kept in the stage")]
    bits: Annotated[int, Field(ge=2, le=32, description="weight bit-width")]


class Architecture(BaseModel):
    """A student: per-stage pruning and bit-widths, the pruning criterion, the KD recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: list[StageArchitecture] = Field(min_length=1)
    stem_head_bits: Annotated[int, Field(ge=2, le=32)] = 32
    criterion: str = "l2"
    kd_temperature: Annotated[float, Field(gt=0)] = 4.0
    kd_alpha: Annotated[float, Field(ge=0, le=1, description="weight of the KD term")] = 0.7

    def flat(self) -> dict[str, Any]:
        """One column per dimension, as in trials.csv."""
        row: dict[str, Any] = {}
        for i, stage in enumerate(self.stages):
            for key, value in stage.model_dump().items():
                row[f"stage{i}.{key}"] = value
        row.update(self.model_dump(exclude={"stages"}))
        return row
