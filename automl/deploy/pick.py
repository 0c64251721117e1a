"""Choose one front model under a user's budget. Pure logic over pareto.json entries.

The figures constrained are those of what ships: ONNX Runtime's batch-1 latency and the
model.onnx size, as `report` measured them, and the validation accuracy the search
optimised (test accuracy is reported, never used to choose).
"""

from __future__ import annotations

from dataclasses import dataclass

from automl.deploy.remeasure import deployed_latency
from automl.run.documents import Deployed, FrontMember


@dataclass(frozen=True)
class Constraints:
    max_latency_ms: float | None = None
    max_size_kb: float | None = None  # kilobytes of 1000 bytes
    min_accuracy: float | None = None

    def describe(self) -> str:
        parts = []
        if self.max_latency_ms is not None:
            parts.append(f"latency <= {self.max_latency_ms:g} ms")
        if self.max_size_kb is not None:
            parts.append(f"size <= {self.max_size_kb:g} kB")
        if self.min_accuracy is not None:
            parts.append(f"val accuracy >= {self.min_accuracy:g}")
        return ", ".join(parts) or "no constraints"


@dataclass(frozen=True)
class Figures:
    trial: int
    val_accuracy: float
    latency_ms: float  # ONNX Runtime, batch 1
    size_bytes: int  # model.onnx

    def describe(self) -> str:
        return (
            f"trial {self.trial}: val accuracy {self.val_accuracy:.4f}, "
            f"{self.latency_ms:.3f} ms, {self.size_bytes / 1000:.1f} kB"
        )


def figures_of(member: FrontMember) -> Figures:
    deployed = member.deployed
    return Figures(
        trial=member.trial,
        val_accuracy=member.val_accuracy,
        latency_ms=deployed_latency(member),
        size_bytes=deployed.onnx_bytes if isinstance(deployed, Deployed) else member.size_bytes,
    )


def shortfalls(f: Figures, c: Constraints) -> dict[str, float]:
    """How far `f` misses each constraint, 0 where it is met: latency and size relative to
    their limit, accuracy as a difference of fractions (0.02 is 2 points)."""
    out = {}
    if c.max_latency_ms is not None:
        out["latency"] = max(0.0, f.latency_ms / c.max_latency_ms - 1)
    if c.max_size_kb is not None:
        out["size"] = max(0.0, f.size_bytes / (1000 * c.max_size_kb) - 1)
    if c.min_accuracy is not None:
        out["accuracy"] = max(0.0, c.min_accuracy - f.val_accuracy)
    return out


@dataclass
class Choice:
    picked: Figures | None
    closest: list[tuple[Figures, dict[str, float]]]  # when nothing fits: nearest misses first


def choose(front: list[FrontMember], constraints: Constraints, n_closest: int = 3) -> Choice:
    """The most accurate front model that meets every constraint; ties go to the smaller,
    then the faster, then the lower trial number. With no fit, the `n_closest` models whose
    summed relative shortfall is smallest. Models whose ONNX form failed its accuracy check in
    `report` cannot be shipped and are left out."""
    figs = [figures_of(m) for m in front if m.shippable]
    fits = [f for f in figs if not any(shortfalls(f, constraints).values())]
    if fits:
        best = min(fits, key=lambda f: (-f.val_accuracy, f.size_bytes, f.latency_ms, f.trial))
        return Choice(best, [])
    ranked = sorted(
        ((f, shortfalls(f, constraints)) for f in figs),
        key=lambda fs: (sum(fs[1].values()), -fs[0].val_accuracy, fs[0].trial),
    )
    return Choice(None, ranked[:n_closest])
