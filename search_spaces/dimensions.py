"""Dimension types of a search space, tagged by `type`; a plain YAML scalar means fixed.

Each dimension samples through a `Suggester` (an Optuna trial satisfies it), so the
same space drives Optuna, Ray Tune's OptunaSearch and property tests.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


class Suggester(Protocol):
    """The sampling calls a space makes; `optuna.Trial` provides them."""

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int: ...

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any: ...


class _Dim(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatDim(_Dim):
    type: Literal["float"] = "float"
    low: float
    high: float
    step: Annotated[float | None, Field(gt=0)] = None
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> FloatDim:
        if not self.low <= self.high:
            raise ValueError(f"`low <= high` must hold, but got (low={self.low}, high={self.high})")
        if self.log and (self.step is not None or self.low <= 0):
            raise ValueError("a log dimension needs low > 0 and no step")
        return self

    def sample(self, name: str, s: Suggester) -> float:
        return s.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def grid(self) -> list[float]:
        """The extremes (and every grid point when stepped): used to check a space up front."""
        if self.step is None:
            return [self.low, self.high]
        n = math.floor((self.high - self.low) / self.step + 1e-9)
        return [round(self.low + i * self.step, 10) for i in range(n + 1)]


class IntDim(_Dim):
    """An integer range; for per-stage block counts, an omitted bound means the stage's own."""

    type: Literal["int"] = "int"
    low: int | None = None
    high: int | None = None
    step: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _check(self) -> IntDim:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"`low <= high` must hold, but got (low={self.low}, high={self.high})")
        return self

    def sample(self, name: str, s: Suggester) -> int:
        assert self.low is not None and self.high is not None, "bind the bounds first"
        if self.low == self.high:
            return self.low
        return s.suggest_int(name, self.low, self.high, step=self.step)

    def grid(self) -> list[int]:
        assert self.low is not None and self.high is not None
        return list(range(self.low, self.high + 1, self.step))


class ChoiceDim(_Dim):
    type: Literal["choice"] = "choice"
    values: list[Any] = Field(min_length=1)

    def sample(self, name: str, s: Suggester) -> Any:
        if len(self.values) == 1:
            return self.values[0]
        return s.suggest_categorical(name, list(self.values))

    def grid(self) -> list[Any]:
        return list(self.values)


class FixedDim(_Dim):
    type: Literal["fixed"] = "fixed"
    value: Any

    def sample(self, name: str, s: Suggester) -> Any:
        return self.value

    def grid(self) -> list[Any]:
        return [self.value]


def _fixed_if_scalar(raw: Any) -> Any:
    """A plain value in YAML (`bits: 8`) means a fixed dimension."""
    if isinstance(raw, dict | _Dim):
        return raw
    return {"type": "fixed", "value": raw}


Dimension = Annotated[
    FloatDim | IntDim | ChoiceDim | FixedDim,
    Field(discriminator="type"),
    BeforeValidator(_fixed_if_scalar),
]
