"""Compare the trials of two runs of the same command, timings aside: the check that a
refactoring preserved behaviour.

    python cli.py search --budget 6 --epochs 1 --seed 3 --out before   # on the old code
    python cli.py search --budget 6 --epochs 1 --seed 3 --out after    # on the new code
    python benchmarks/same_trials.py before after

Compares every column of trials.csv that both runs have (architectures, val_accuracy,
size_bytes, params, macs, states) except the timed ones, and lists the columns only one run
has. Exits 1 when a trial differs.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

TIMED = {"latency_ms", "train_seconds"}


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "trials.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def main(before: Path, after: Path) -> int:
    old, new = rows(before), rows(after)
    shared = [c for c in old[0] if c in new[0] and c not in TIMED]
    only = sorted(set(old[0]) ^ set(new[0]))
    print(
        f"{len(old)} and {len(new)} trials; comparing {len(shared)} columns"
        + (f"; in one run only: {only}" if only else "")
    )
    differ = 0
    for a, b in zip(old, new, strict=False):
        diff = {c: (a[c], b[c]) for c in shared if a[c] != b[c]}
        differ += bool(diff)
        print(f"trial {a['number']}: " + ("same" if not diff else f"differs {diff}"))
    same = differ == 0 and len(old) == len(new)
    print("same trials" if same else f"{differ} trial(s) differ")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
