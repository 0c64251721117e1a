"""Summarise a finished search against the acceptance figures of the end-to-end issue.

    python benchmarks/end_to_end.py runs/digits

Reads run.json and pareto.json; prints the wall time, the controller's overhead, the
front, and whether a model lies within 1 point of the teacher's val accuracy at no more
than 5% of its size and 50% of its latency. Also checks the shipped teacher recipe (digits,
resnet18, 30 epochs) reaches 97% test accuracy: the test suite trains a shorter one. Exits 1
when a check fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(run_dir: Path) -> int:
    run = json.loads((run_dir / "run.json").read_text())
    pareto = json.loads((run_dir / "pareto.json").read_text())
    teacher, front = pareto["teacher"], pareto["front"]
    wall = run["wall_seconds"]
    overhead = sum(s["controller_overhead_seconds"] for s in run["sessions"])
    search = sum(s["search_seconds"] for s in run["sessions"])
    teacher_s = sum(s["teacher_seconds"] for s in run["sessions"])
    print(f"run: {run_dir}  device: {run['device']}  budget: {run['config']['search']['budget']}")
    print(
        f"wall {wall:.0f} s (teacher {teacher_s:.0f} s, search {search:.0f} s); controller "
        f"overhead {overhead:.1f} s = {100 * overhead / search:.2f}% of the search"
    )
    print(
        f"teacher {teacher['model']}: val {teacher['val_accuracy']:.4f} test "
        f"{teacher['test_accuracy']:.4f} latency {teacher['latency_ms']:.3f} ms size "
        f"{teacher['size_bytes'] / 1e6:.2f} MB"
    )
    print(f"front: {len(front)} models, hypervolume {pareto['hypervolume']:.4f}")
    print("trial  val_acc  test_acc  latency_ms (% teacher)  size_kB (% teacher)")
    good = []
    for m in sorted(front, key=lambda m: m["latency_ms"]):
        lat = m["latency_ms"] / teacher["latency_ms"]
        size = m["size_bytes"] / teacher["size_bytes"]
        ok = m["val_accuracy"] >= teacher["val_accuracy"] - 0.01 and size <= 0.05 and lat <= 0.5
        good += [m["trial"]] if ok else []
        print(
            f"{m['trial']:5d}  {m['val_accuracy']:.4f}   {m['test_accuracy']:.4f}   "
            f"{m['latency_ms']:7.3f} ({100 * lat:5.1f}%)      {m['size_bytes'] / 1e3:8.1f} "
            f"({100 * size:4.1f}%){'  *' if ok else ''}"
        )
    checks = {
        "teacher reaches 97% test accuracy": teacher["test_accuracy"] >= 0.97,
        "front holds at least 5 models": len(front) >= 5,
        "a model within 1 point of the teacher at <=5% size, <=50% latency (*)": bool(good),
        "controller overhead under 5% of the search": overhead < 0.05 * search,
        "wall time within 15 minutes": wall <= 900,
    }
    for name, ok in checks.items():
        print(f"[{'pass' if ok else 'FAIL'}] {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/digits")))
