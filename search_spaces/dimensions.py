"""Dimension types of a search space, tagged by `type`; a plain YAML scalar means fixed.

Each dimension samples through a `Suggester` (an Optuna trial satisfies it), so the
same space drives Optuna, Ray Tune's OptunaSearch and property tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import islice
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


class Suggester(Protocol):
    """The sampling calls a space makes; `optuna.Trial` provides them."""

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int: ...

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any: ...


# Ranges longer than this are checked at their ends only, so checking a space costs O(1).
PROBE_LIMIT = 1000


class _Dim(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def is_fixed(self) -> bool:
        """`sample` asks the suggester nothing: the dimension has one value."""
        return False

    def ends(self) -> tuple[Any, Any]:
        """The first and the last value the dimension can give (a range's low and high)."""
        return next(iter(self._values())), self._last()

    def probe(self) -> list[Any]:
        """The values a space is checked with: every value of a short range or list, the ends
        (and the first step) of a long one."""
        values = list(islice(self._values(), PROBE_LIMIT + 1))
        if len(values) <= PROBE_LIMIT:
            return values
        return [*values[:2], self._last()]

    def _values(self) -> Iterator[Any]:
        raise NotImplementedError

    def _last(self) -> Any:
        raise NotImplementedError


MAX_GRID = 10**6  # values of a stepped float range: Optuna's grid arithmetic stays exact


class FloatDim(_Dim):
    type: Literal["float"] = "float"
    low: float
    high: float
    step: Annotated[float | None, Field(gt=0)] = None
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> FloatDim:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"low and high must be finite numbers, got {self.low}, {self.high}")
        if not self.low <= self.high:
            raise ValueError(f"`low <= high` must hold, but got (low={self.low}, high={self.high})")
        if self.log and (self.step is not None or self.low <= 0):
            raise ValueError("a log dimension needs low > 0 and no step")
        if self.step is not None and (self.high - self.low) / self.step > MAX_GRID:
            raise ValueError(
                f"step {self.step:g} makes more than {MAX_GRID:,} values from {self.low:g} to "
                f"{self.high:g}; use a larger step, or none for a continuous range"
            )
        return self

    def sample(self, name: str, s: Suggester) -> float:
        return s.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def allows(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step is None:
            return True
        steps = (value - self.low) / self.step
        return abs(steps - round(steps)) < 1e-9

    def _values(self) -> Iterator[float]:
        if self.step is None:
            yield from (self.low, self.high)
            return
        n = math.floor((self.high - self.low) / self.step + 1e-9)
        yield from (round(self.low + i * self.step, 10) for i in range(n + 1))

    def _last(self) -> float:
        if self.step is None:
            return self.high
        return round(
            self.low + math.floor((self.high - self.low) / self.step + 1e-9) * self.step, 10
        )

    def describe(self) -> str:
        step = f" step {self.step:g}" if self.step is not None else ""
        return f"{self.low:g}..{self.high:g}{step}{' log' if self.log else ''}"


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

    @property
    def is_fixed(self) -> bool:
        return self.low is not None and self.low == self.high

    def allows(self, value: Any) -> bool:
        assert self.low is not None and self.high is not None, "bind the bounds first"
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        return self.low <= value <= self.high and (value - self.low) % self.step == 0

    def _values(self) -> Iterator[int]:
        assert self.low is not None and self.high is not None, "bind the bounds first"
        yield from range(self.low, self.high + 1, self.step)

    def _last(self) -> int:
        assert self.low is not None and self.high is not None, "bind the bounds first"
        return self.low + (self.high - self.low) // self.step * self.step

    def describe(self) -> str:
        low = "stage's fewest" if self.low is None else str(self.low)
        high = "stage's all" if self.high is None else str(self.high)
        return f"{low}..{high}" + (f" step {self.step}" if self.step != 1 else "")


class ChoiceDim(_Dim):
    type: Literal["choice"] = "choice"
    values: list[Any] = Field(min_length=1)

    def sample(self, name: str, s: Suggester) -> Any:
        if len(self.values) == 1:
            return self.values[0]
        return s.suggest_categorical(name, list(self.values))

    @property
    def is_fixed(self) -> bool:
        return len(self.values) == 1

    def allows(self, value: Any) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values)

    def _values(self) -> Iterator[Any]:
        yield from self.values

    def _last(self) -> Any:
        return self.values[-1]

    def describe(self) -> str:
        return "|".join(str(v) for v in self.values)


class FixedDim(_Dim):
    type: Literal["fixed"] = "fixed"
    value: Any

    def sample(self, name: str, s: Suggester) -> Any:
        return self.value

    @property
    def is_fixed(self) -> bool:
        return True

    def allows(self, value: Any) -> bool:
        return type(value) is type(self.value) and value == self.value

    def _values(self) -> Iterator[Any]:
        yield self.value

    def _last(self) -> Any:
        return self.value

    def describe(self) -> str:
        return str(self.value)


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
