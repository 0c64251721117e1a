"""Sensitivity narrowing against none: front quality at equal budget (issue: learned and
analysed structured pruning, item 2).

    python benchmarks/narrowing.py [--config configs/fashion_mnist.yaml] [--budget 30]
        [--max-drop 0.5] [--seeds 0 1 2] [--out runs/narrowing]
    python benchmarks/narrowing.py --summarise --out runs/narrowing   # the table again

Two conditions, each a proxy search of `--budget` trials per seed from the same config: `wide`
(the config's space) and `narrow` (the same with `search_space.sensitivity_max_drop`), both
without the config's queued trials (they may lie outside the narrowed space) and without
finalize. Scored by the hypervolume each run's pareto.json holds: validation accuracy,
latency and size normalised by the teacher's, one fixed reference point (automl/objectives.py),
so runs on one teacher compare. The narrowed search's scan is part of its wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml
from _controlled import mean_sd

ROOT = Path(__file__).resolve().parent.parent
CONDITIONS = ("wide", "narrow")


def write_configs(config: Path, budget: int, max_drop: float, out: Path) -> dict[str, Path]:
    raw = yaml.safe_load(config.read_text())
    raw["search"].pop("enqueue", None)
    raw["search"].update(finalize=False, budget=budget)
    paths = {}
    for condition in CONDITIONS:
        variant = yaml.safe_load(yaml.safe_dump(raw))
        variant["name"] = f"{raw['name']}_{condition}"
        if condition == "narrow":
            variant["search_space"]["sensitivity_max_drop"] = max_drop
        paths[condition] = out / f"{condition}.yaml"
        paths[condition].write_text(yaml.safe_dump(variant, sort_keys=False))
    return paths


def summarise(out: Path, seeds: list[int]) -> None:
    print("| condition | hypervolume | front | best val | smallest member kB | wall s |")
    print("|---|---|---|---|---|---|")
    for condition in CONDITIONS:
        rows = []
        for seed in seeds:
            run = out / f"{condition}_{seed}"
            if not (run / "pareto.json").is_file():
                continue
            pareto = json.loads((run / "pareto.json").read_text())
            wall = json.loads((run / "run.json").read_text())["wall_seconds"]
            front = pareto["front"]
            rows.append(
                (
                    pareto["hypervolume"],
                    len(front),
                    max(m["val_accuracy"] for m in front),
                    min(m["size_bytes"] for m in front) / 1e3,
                    wall,
                )
            )
        if not rows:
            continue
        hv = mean_sd([r[0] for r in rows])
        print(
            f"| {condition} ({len(rows)} seeds) | {hv} | "
            f"{statistics.mean(r[1] for r in rows):.1f} | "
            f"{statistics.mean(r[2] for r in rows):.4f} | "
            f"{statistics.mean(r[3] for r in rows):.0f} | "
            f"{statistics.median(r[4] for r in rows):.0f} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "fashion_mnist.yaml")
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--max-drop", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "narrowing")
    parser.add_argument("--summarise", action="store_true", help="only print the table")
    args = parser.parse_args()
    if not args.summarise:
        args.out.mkdir(parents=True, exist_ok=True)
        configs = write_configs(args.config, args.budget, args.max_drop, args.out)
        for seed in args.seeds:  # interleaved, so that drift of the machine hits both alike
            for condition in CONDITIONS:
                command = [sys.executable, str(ROOT / "cli.py"), "search"]
                command += ["--config", str(configs[condition]), "--seed", str(seed)]
                command += ["--out", str(args.out / f"{condition}_{seed}")]
                print(" ".join(command), flush=True)
                subprocess.run(command, cwd=ROOT, check=True)
    summarise(args.out, args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
