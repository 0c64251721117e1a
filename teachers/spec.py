"""The teacher section of an experiment config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from automl.paths import GivenPath


class TeacherConfig(BaseModel):
    """A timm model by name; weights from a local file, the hub, or trained here and cached."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[str, Field(min_length=1, description="timm model name")] = "resnet18"
    checkpoint: GivenPath | None = Field(
        default=None,
        description="local weights: .safetensors, or a torch state dict; a classifier for "
        "another class count is replaced and the model fine-tuned for `epochs`",
    )
    pretrained: bool = Field(default=False, description="start from timm hub weights (online)")
    small_input: bool = Field(
        default=False,
        description="for images of about 32 px or less: drop the stem's first 2x downsampling "
        "(a ResNet's max-pool, else the stride of the first strided convolution), so every "
        "stage sees twice the rows and columns; 4x the multiply-accumulates, 2.2x the "
        "training time of resnet18 at 28 px on a CPU (BENCHMARKS.md)",
    )
    epochs: Annotated[
        int, Field(ge=0, le=1000, description="training epochs; 0 with a checkpoint")
    ] = 30
    lr: Annotated[float, Field(gt=0, le=10)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 5e-4
    batch_size: Annotated[int, Field(ge=2, le=4096, description="2 at least: batch norm")] = 64
    seed: Annotated[
        int,
        Field(ge=0, lt=2**31, description="of the teacher's training; not the search's seed"),
    ] = 0
    cache_dir: GivenPath = Field(
        default=Path(".cache/teachers"), description="where trained teachers live"
    )

    @model_validator(mode="after")
    def _trained_somehow(self) -> TeacherConfig:
        if self.epochs == 0 and self.checkpoint is None and not self.pretrained:
            raise ValueError(
                "epochs: 0 trains nothing, which needs weights to start from (checkpoint or "
                "pretrained); without them the teacher would stay untrained"
            )
        return self
