"""A user's limits on the students a search may keep: latency, size, accuracy.

Latency and size do not depend on training (the architecture fixes them), so a candidate that
breaks either is measured and rejected before it trains, in about a second; accuracy is known
only after training. Every trial tells the sampler its constraint values through Optuna's
`Trial.set_constraint` (feasible when all are at most 0), so samplers learn where the
feasible region is; the Pareto front holds feasible students only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REJECTED_BEFORE_TRAINING = "rejected before training"


@dataclass(frozen=True)
class Limits:
    """`search.max_latency_ms`, `search.max_size_kb` (kB of 1000 bytes) and
    `search.min_accuracy` (validation accuracy); None: no limit."""

    max_latency_ms: float | None = None
    max_size_kb: float | None = None
    min_accuracy: float | None = None

    @classmethod
    def of(cls, search: Any) -> Limits:
        return cls(search.max_latency_ms, search.max_size_kb, search.min_accuracy)

    @property
    def any(self) -> bool:
        return any(
            v is not None for v in (self.max_latency_ms, self.max_size_kb, self.min_accuracy)
        )

    def constraints(self, scores: Any, trained: bool = True) -> dict[str, float]:
        """One value per limit, in the limit's units, positive when it is broken: what Optuna's
        samplers read. A student rejected before training has no accuracy to judge."""
        found: dict[str, float] = {}
        if self.max_latency_ms is not None:
            found["latency_ms"] = scores.latency_ms - self.max_latency_ms
        if self.max_size_kb is not None:
            found["size_kb"] = scores.size_bytes / 1000 - self.max_size_kb
        if self.min_accuracy is not None:
            found["val_accuracy"] = self.min_accuracy - scores.val_accuracy if trained else 0.0
        return found

    def broken(self, scores: Any, trained: bool = True, sized: bool = True) -> str:
        """The limits `scores` break, in words ('' when none); `sized=False` leaves the size
        unjudged (it falls while the student trains)."""
        words = {
            "latency_ms": f"latency {scores.latency_ms:.3f} ms > search.max_latency_ms "
            f"{self.max_latency_ms}",
            "size_kb": f"size {scores.size_bytes / 1000:.1f} kB > search.max_size_kb "
            f"{self.max_size_kb}",
            "val_accuracy": f"val_accuracy {scores.val_accuracy:.4f} < search.min_accuracy "
            f"{self.min_accuracy}",
        }
        found = self.constraints(scores, trained)
        if not sized:
            found.pop("size_kb", None)
        return "; ".join(words[k] for k, v in found.items() if v > 0)


class Rejected(Exception):
    """A candidate broke a latency or size limit before training; `scores` holds what was
    measured (accuracies 0: never trained)."""

    def __init__(self, reason: str, scores: Any) -> None:
        super().__init__(f"{REJECTED_BEFORE_TRAINING}: {reason}")
        self.reason = reason
        self.scores = scores
