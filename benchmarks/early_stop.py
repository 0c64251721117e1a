"""Early stopping against none: the same search (sampler, budget of completed trials, epochs)
with `search.early_stop` none, asha and mo_asha, side by side per seed.

    python benchmarks/early_stop.py [--config configs/digits.yaml] [--budget 30] [--epochs 6]
                                    [--seeds 0 1 2] [--modes none asha mo_asha] [--out DIR]

Scores each run by one hypervolume with a fixed reference point: MACs in place of latency
(noise-free, so runs compare exactly), over (1 - val accuracy, MACs / teacher's, packed size /
teacher's) and the reference (1, 1, 1); the run's own latency hypervolume is printed beside
it. Also: trials started (stopped ones included) per CPU-hour of search, and the search time
each run took to reach 98% of the final hypervolume of the run without early stopping (same
seed). Runs go to --out (default: a temporary folder), one per mode and seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def curve(run: Path) -> tuple[list[tuple[float, float]], dict[str, int]]:
    """(seconds since the study's first trial started, MACs hypervolume) after each completed
    trial, and the count of trials by state."""
    import numpy as np
    import optuna

    from automl.pareto import hypervolume
    from automl.run.layout import RunDir

    run_dir = RunDir(run)
    teacher = run_dir.read_pareto().teacher
    study = optuna.load_study(
        study_name=run_dir.read_run().study_name, storage=f"sqlite:///{run_dir.study_db}"
    )
    trials = sorted(study.trials, key=lambda t: t.datetime_start)
    start = trials[0].datetime_start
    counts = {"started": len(trials), "completed": 0, "stopped": 0}
    points, out = [], []
    for t in sorted(trials, key=lambda t: t.datetime_complete or t.datetime_start):
        if t.state.name == "PRUNED":
            counts["stopped"] += 1
        trained = t.state.name == "COMPLETE" and not t.user_attrs.get("rejected")
        if not trained or "result" not in t.user_attrs:
            continue
        counts["completed"] += 1
        r = t.user_attrs["result"]
        points.append(
            [1 - r["val_accuracy"], r["macs"] / teacher.macs, r["size_bytes"] / teacher.size_bytes]
        )
        seconds = (t.datetime_complete - start).total_seconds()
        out.append((seconds, hypervolume(np.array(points), np.ones(3))))
    return out, counts


def main() -> int:
    from automl.config import load_config
    from automl.run.layout import RunDir
    from automl.run.search import run_search

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "digits.yaml")
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=["none", "asha", "mo_asha"])
    parser.add_argument("--out", type=Path, help="keep the runs here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="early_stop."))
    base = load_config(args.config)
    rows: dict[str, list[dict]] = {m: [] for m in args.modes}
    for seed in args.seeds:
        for mode in args.modes:
            search = base.search.model_copy(
                update={"budget": args.budget, "early_stop": mode, "finalize": False}
            )
            training = base.training.model_copy(update={"epochs": args.epochs})
            cfg = base.model_copy(
                update={
                    "seed": seed,
                    "out": out / f"{mode}_seed{seed}",
                    "search": search,
                    "training": training,
                }
            )
            start = time.perf_counter()
            run_search(cfg)
            wall = time.perf_counter() - start
            points, counts = curve(cfg.out)
            session = RunDir(cfg.out).read_run().sessions[-1]
            row = {
                "seed": seed,
                "curve": points,
                "hv_latency": RunDir(cfg.out).read_pareto().hypervolume,
                "search_seconds": session.search_seconds,
                "wall": wall,
                **counts,
            }
            rows[mode].append(row)
            print(
                f"seed {seed} {mode:8s} HV(MACs) {points[-1][1]:.4f} HV(latency) "
                f"{row['hv_latency']:.4f} started {counts['started']} stopped "
                f"{counts['stopped']} search {session.search_seconds:.0f} s",
                flush=True,
            )
    print(
        f"\n{args.config.name}, budget {args.budget} completed trials of {args.epochs} epochs, "
        f"sampler {base.search.sampler}, seeds {args.seeds}; runs in {out}"
    )
    print(
        "| early_stop | HV (MACs), median | HV (latency), median | trials started | stopped "
        "| search s | trials per CPU-hour | s to 98% of none's HV |"
    )
    print("|---|---|---|---|---|---|---|---|")
    control = {r["seed"]: r["curve"][-1][1] for r in rows.get("none", [])}
    for mode, rs in rows.items():
        reach = []
        for r in rs:
            target = 0.98 * control.get(r["seed"], float("nan"))
            hit = next((s for s, hv in r["curve"] if hv >= target), None)
            reach.append(f"{hit:.0f}" if hit is not None else "never")
        per_hour = statistics.median(r["started"] / r["search_seconds"] * 3600 for r in rs)
        print(
            f"| {mode} | {statistics.median(r['curve'][-1][1] for r in rs):.4f} | "
            f"{statistics.median(r['hv_latency'] for r in rs):.4f} | "
            f"{statistics.median(r['started'] for r in rs):.0f} | "
            f"{statistics.median(r['stopped'] for r in rs):.0f} | "
            f"{statistics.median(r['search_seconds'] for r in rs):.0f} | {per_hour:.0f} | "
            f"{', '.join(reach)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
