"""A search sized in time (`search.time_budget`): start a trial only while it can finish in time.

Both controllers ask `TimeBudget.allows()` before they start a trial, and tell it each trial's
wall seconds. A trial is expected to take the median of those known: the study's trials that
trained (a resumed search knows them from their start and end) and this session's. A search
that knows none starts its first trial while any time is left. After a proxy search,
finalize retrains the front at full fidelity, so its share is kept free: `final_models` trials
at the proxy's median time scaled by the fidelity (epochs and images). A resumed search counts
the time its earlier sessions spent. With several trials at once (Ray), each is judged the
same way when it would start, so the last ones end about when the budget does.
"""

from __future__ import annotations

import logging
import re
import statistics
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def parse_duration(value: object) -> float:
    """Seconds from `90`, `90s`, `30m`, `2h` or `1.5h` (a number alone is seconds); a
    ValueError names what is allowed."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        found = _DURATION.match(str(value)) if isinstance(value, str) else None
        if found is None:
            raise ValueError(
                f"{str(value)[:40]!r} is no duration; give seconds, or a number with s, m or h "
                "(90s, 30m, 2h)"
            )
        seconds = float(found[1]) * _UNITS[found[2] or "s"]
    if not 0 < seconds < float("inf"):
        raise ValueError(f"{value!r}: a duration is more than 0 seconds")
    return seconds


def describe(seconds: float) -> str:
    """`seconds` as a person reads them: 45 s, 12.5 min, 2.0 h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class TimeBudget:
    """The seconds a search may spend, and what it has spent (see the module docstring)."""

    seconds: float | None  # None: no time limit (the trial budget alone)
    spent_before: float = 0.0  # earlier sessions of a resumed run
    finalize_trials: int = 0  # trials finalize retrains after the search (0: no finalize)
    fidelity: float = 1.0  # a full-fidelity trial's seconds per proxy trial second
    started: float = field(default_factory=time.perf_counter)
    durations: list[float] = field(default_factory=list)
    stopped: str = ""  # why no more trials start, once that is so

    def record(self, seconds: float) -> None:
        """A trial of this session took `seconds` (wall, evaluation included)."""
        self.durations.append(seconds)

    @property
    def used(self) -> float:
        return self.spent_before + time.perf_counter() - self.started

    def allows(self) -> bool:
        """Whether a trial started now is expected to end, with finalize's share after it,
        within the budget. Says why once, at the first refusal."""
        if self.seconds is None:
            return True
        used = self.used
        if not self.durations:  # nothing known of a trial yet: start one while time is left
            if used < self.seconds:
                return True
            return self._stop(f"{describe(used)} of {describe(self.seconds)} used before a trial")
        trial = statistics.median(self.durations)
        reserve = self.finalize_trials * trial * self.fidelity
        if used + trial + reserve <= self.seconds:
            return True
        kept = f", finalize about {describe(reserve)}" if reserve else ""
        return self._stop(
            f"{describe(used)} of {describe(self.seconds)} used; the next trial would take "
            f"about {describe(trial)}{kept}"
        )

    def _stop(self, why: str) -> bool:
        if not self.stopped:
            self.stopped = f"time budget: {why}: no more trials start"
            log.info("%s", self.stopped)
        return False
