"""Search quality: each controller against random sampling and a hand-made uniform sweep, at
equal budget and seeds (issue: a search that beats its peers, items 3 and 5).

    python benchmarks/search_quality.py [--config configs/digits.yaml] [--budget 30]
        [--seeds 0 1 2] [--conditions tpe random nsga2 rl tpe+mo_asha ... sweep]
        [--out runs/search_quality] [--figures DIR]
    python benchmarks/search_quality.py --summarise --out DIR [--figures DIR]   # tables again

A condition is a sampler (`search.sampler`), optionally with `+EARLY_STOP`
(`search.early_stop`) and `@BUDGET` (its own budget, e.g. `tpe+mo_asha@90`: early stopping
given about the seconds its control spends), or `sweep`: what a user does by hand with
torch-pruning and distillation, every stage at one channel fraction (the config's grid), all
blocks, l1 channels, float32 or int8 weights, temperature 4 and alpha 0.7, the same training.
Each run is a `cli.py search` of the config without its queued trials and without finalize,
`--budget` trained trials (the sweep: its grid), in `--out/CONDITION_SEED`; a run already
complete there is scored, not rerun, so a benchmark can be resumed or extended.

Scoring: one hypervolume with one fixed reference point for every run of a config, over the
trials each run trained. The axes are the validation error and log10 of MACs (noise-free) or
of the measured latency, and log10 of the packed size, each cost as a fraction of the
teacher's; the reference is the teacher's cost and its validation error plus `--margin`
(0.10). Log axes because compression spans decades: on linear fractions, the (1, 1, 1)
reference of pareto.json gives a student of 1% of the teacher's size nearly the credit of one
of 5% (that hypervolume is printed beside, as "HV pareto.json").

Printed: the final hypervolumes (median and each seed), trials started and stopped, search
seconds, trials per CPU-hour (started trials over the search's wall time times the cores),
the hypervolume at a quarter, half and all of the budget, and the issue's targets: the
default controller's median HV at least 1.10 times random's; random's final HV reached
within 40% of the budget (per seed); early stopping with at least 2 times the trials per
CPU-hour at 98% of the HV of the same sampler without it (at equal trials, and at equal
search seconds, since the budget counts stopped trials). `--figures` writes SVG plots of
the median HV against trials and against search seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SWEEP_BITS = (32, 8)
SWEEP_RECIPE = {"kd_temperature": 4.0, "kd_alpha": 0.7}
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip


@dataclass
class Run:
    """One finished search, as the benchmark scores it."""

    condition: str
    seed: int
    seconds: list[float] = field(default_factory=list)  # after each trained trial
    points: list[list[float]] = field(default_factory=list)  # err, log MACs, log ms, log size
    started: int = 0
    stopped: int = 0
    search_seconds: float = 0.0
    hv_pareto: float = 0.0  # pareto.json's own (linear, reference (1, 1, 1))
    teacher_error: float = 0.0  # 1 - the teacher's validation accuracy


def by_condition(runs: list[Run]) -> dict[str, list[Run]]:
    """The runs grouped by condition, in the order they come."""
    by: dict[str, list[Run]] = {}
    for r in runs:
        by.setdefault(r.condition, []).append(r)
    return by


def sweep_grid(space: dict) -> list[float]:
    """The channel fractions of the config's `channel_keep` grid, smallest first."""
    keep = space.get("channel_keep", {"type": "float", "low": 0.25, "high": 1.0, "step": 0.125})
    if not isinstance(keep, dict):
        return [float(keep)]
    low, high, step = keep["low"], keep["high"], keep.get("step") or 0.125
    return [round(low + i * step, 6) for i in range(round((high - low) / step) + 1)]


def write_config(config: Path, condition: str, budget: int, out: Path) -> Path:
    condition, _, own_budget = condition.partition("@")
    raw = yaml.safe_load(config.read_text())
    raw["search"].pop("enqueue", None)
    raw["search"].update(finalize=False, budget=int(own_budget or budget), early_stop="none")
    raw["name"] = f"{raw['name']}_{condition.replace('+', '_')}" + (
        f"_budget{own_budget}" if own_budget else ""
    )
    if condition == "sweep":
        space = raw["search_space"]
        grid = sweep_grid(space)
        space.update(criterion="l1", bits={"type": "choice", "values": list(SWEEP_BITS)})
        space.update(SWEEP_RECIPE)
        raw["search"]["enqueue"] = [
            {"blocks": "high", "channel_keep": k, "bits": b} for k in grid for b in SWEEP_BITS
        ]
        raw["search"].update(budget=len(raw["search"]["enqueue"]), sampler="random")
    else:
        sampler, _, early_stop = condition.partition("+")
        raw["search"].update(sampler=sampler, early_stop=early_stop or "none")
    path = out / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def complete(run: Path) -> bool:
    try:
        return json.loads((run / "run.json").read_text())["status"] == "complete"
    except (OSError, ValueError, KeyError):
        return False


def read_run(path: Path, condition: str, seed: int) -> Run:
    """The trained trials of a finished run, in the order they finished, on the benchmark's
    axes (module docstring)."""
    import optuna

    from automl.run.layout import RunDir

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_dir = RunDir(path)
    pareto = run_dir.read_pareto()
    teacher = pareto.teacher
    doc = run_dir.read_run()
    study = optuna.load_study(study_name=doc.study_name, storage=f"sqlite:///{run_dir.study_db}")
    trials = [t for t in study.trials if t.datetime_start is not None]
    start = min(t.datetime_start for t in trials)
    run = Run(condition, seed, started=len(trials), hv_pareto=pareto.hypervolume)
    run.teacher_error = 1 - teacher.val_accuracy
    run.search_seconds = sum(s.search_seconds for s in doc.sessions)
    run.stopped = sum(t.state.name == "PRUNED" for t in trials)
    done = [t for t in trials if t.state.name == "COMPLETE" and "result" in t.user_attrs]
    for t in sorted(done, key=lambda t: t.datetime_complete):
        r = t.user_attrs["result"]
        if t.user_attrs.get("rejected") or r.get("epochs", 1) == 0:
            continue
        run.seconds.append((t.datetime_complete - start).total_seconds())
        run.points.append(
            [
                1 - r["val_accuracy"],
                math.log10(r["macs"] / teacher.macs),
                math.log10(r["latency_ms"] / teacher.latency_ms),
                math.log10(r["size_bytes"] / teacher.size_bytes),
            ]
        )
    return run


def hv_curve(run: Run, reference_error: float, cost: str) -> list[float]:
    """The hypervolume after each trained trial; `cost`: 'macs' or 'latency'."""
    from automl.pareto import hypervolume

    column = 1 if cost == "macs" else 2
    pts = np.array(run.points).reshape(-1, 4)[:, [0, column, 3]]
    reference = np.array([reference_error, 0.0, 0.0])
    return [hypervolume(pts[: i + 1], reference) for i in range(len(pts))]


def at(curve: list[float], n: int) -> float:
    """The hypervolume after `n` trained trials (the last one when fewer trained)."""
    return curve[min(n, len(curve)) - 1] if curve and n > 0 else 0.0


def at_seconds(run: Run, curve: list[float], seconds: float) -> float:
    """The hypervolume of the trials `run` had finished `seconds` into its search."""
    done = [hv for s, hv in zip(run.seconds, curve, strict=True) if s <= seconds]
    return done[-1] if done else 0.0


def summarise(runs: list[Run], reference_error: float, budget: int, default: str) -> None:
    cores = os.cpu_count() or 1
    by = by_condition(runs)
    curves = {
        (r.condition, r.seed, cost): hv_curve(r, reference_error, cost)
        for r in runs
        for cost in ("macs", "latency")
    }
    print(f"reference: validation error {reference_error:.4f}, the teacher's MACs, latency, size")
    print(
        "| condition | seeds | HV (MACs), median [per seed] | HV (latency), median | "
        "HV pareto.json | trials started (stopped) | search s | trials per CPU-hour | "
        f"HV (MACs) at {budget // 4}, {budget // 2}, {budget} trials |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for condition, rs in by.items():
        macs = [curves[(r.condition, r.seed, "macs")] for r in rs]
        lat = [curves[(r.condition, r.seed, "latency")] for r in rs]
        finals = [c[-1] if c else 0.0 for c in macs]
        per_hour = [r.started / (r.search_seconds * cores) * 3600 for r in rs]
        marks = ", ".join(f"{statistics.median(at(c, n) for c in macs):.4f}"
                          for n in (budget // 4, budget // 2, budget))  # fmt: skip
        print(
            f"| {condition} | {len(rs)} | {statistics.median(finals):.4f} "
            f"[{', '.join(f'{f:.4f}' for f in finals)}] | "
            f"{statistics.median(c[-1] if c else 0.0 for c in lat):.4f} | "
            f"{statistics.median(r.hv_pareto for r in rs):.4f} | "
            f"{statistics.median(r.started for r in rs):.0f} "
            f"({statistics.median(r.stopped for r in rs):.0f}) | "
            f"{statistics.median(r.search_seconds for r in rs):.0f} | "
            f"{statistics.median(per_hour):.0f} | {marks} |"
        )
    targets(by, curves, budget, default)


def targets(by, curves, budget: int, default: str) -> None:
    def final(r: Run, cost: str = "macs") -> float:
        c = curves[(r.condition, r.seed, cost)]
        return c[-1] if c else 0.0

    if default in by and "random" in by:
        for cost in ("macs", "latency"):
            ratio = statistics.median(final(r, cost) for r in by[default]) / statistics.median(
                final(r, cost) for r in by["random"]
            )
            verdict = "pass" if ratio >= 1.10 else "FAIL"
            print(f"[{verdict}] {default}'s median HV ({cost}) / random's: {ratio:.3f} (>= 1.10)")
        random_final = {r.seed: final(r) for r in by["random"]}
        reach = []
        for r in by[default]:
            c = curves[(r.condition, r.seed, "macs")]
            goal = random_final.get(r.seed, math.inf)
            reach.append(next((i + 1 for i, hv in enumerate(c) if hv >= goal), None))
        fractions = [h / budget if h else math.inf for h in reach]
        verdict = "pass" if statistics.median(fractions) <= 0.4 else "FAIL"
        shown = ", ".join(str(h) if h else "never" for h in reach)
        print(f"[{verdict}] {default} reaches random's final HV (MACs) after trials: {shown} "
              f"of {budget} (median within 40%)")  # fmt: skip
    for condition, rs in by.items():
        sampler, plus, _ = condition.partition("+")
        if not plus or sampler not in by:
            continue
        control = {r.seed: r for r in by[sampler]}
        pairs = [(r, control[r.seed]) for r in rs if r.seed in control]
        if not pairs:
            continue
        speed = statistics.median(
            (r.started / r.search_seconds) / (c.started / c.search_seconds) for r, c in pairs
        )
        quality = statistics.median(final(r) / final(c) for r, c in pairs)
        verdict = "pass" if speed >= 2 and quality >= 0.98 else "FAIL"
        own = condition.partition("@")[2]
        when = f"its {own} trials against {budget}" if own else "equal trials"
        print(f"[{verdict}] {condition}: {speed:.2f}x the trials per CPU-hour of {sampler}, at "
              f"{100 * quality:.1f}% of its HV (MACs) ({when}; >= 2x at >= 98%)")  # fmt: skip
        # the budget counts stopped trials, so a run with early stopping ends sooner (unless
        # given a budget of its own): both hypervolumes after the seconds the shorter one took
        timed = []
        for r, c in pairs:
            seconds = min(r.seconds[-1], c.seconds[-1])
            hv_r = at_seconds(r, curves[(r.condition, r.seed, "macs")], seconds)
            hv_c = at_seconds(c, curves[(c.condition, c.seed, "macs")], seconds)
            timed.append(hv_r / hv_c if hv_c > 0 else math.inf)
        print(f"       at equal search seconds: {100 * statistics.median(timed):.1f}% of "
              f"{sampler}'s HV (MACs) [{', '.join(f'{100 * t:.0f}%' for t in timed)}]")  # fmt: skip


def svg(series: dict[str, list[tuple[float, float]]], xlabel: str, title: str) -> str:
    """A line plot of each series (x, y) as a standalone SVG, no plotting library needed."""
    w, h, left, bottom, pad = 640, 400, 70, 50, 20
    xs = [x for s in series.values() for x, _ in s] or [0, 1]
    ys = [y for s in series.values() for _, y in s] or [0, 1]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def px(x: float, y: float) -> str:
        u = left + (x - x0) / (x1 - x0) * (w - left - pad)
        v = h - bottom - (y - y0) / (y1 - y0) * (h - bottom - pad)
        return f"{u:.1f},{v:.1f}"

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12"><rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="14" text-anchor="middle">{title}</text>',
           f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">{xlabel}</text>',
           f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" '
           f'text-anchor="middle">hypervolume (MACs), median of seeds</text>']  # fmt: skip
    for i in range(5):
        x, y = x0 + i * (x1 - x0) / 4, y0 + i * (y1 - y0) / 4
        u, v = px(x, y0).split(",")[0], px(x0, y).split(",")[1]
        out.append(f'<text x="{u}" y="{h - bottom + 16}" text-anchor="middle">{x:.4g}</text>')
        out.append(f'<text x="{left - 6}" y="{v}" text-anchor="end">{y:.3g}</text>')
        out.append(f'<line x1="{left}" x2="{w - pad}" y1="{v}" y2="{v}" stroke="#ddd"/>')
    for i, (name, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(px(x, y) for x, y in points)
        dash = ' stroke-dasharray="6 4"' if name == "sweep" else ""
        out.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{path}"/>'
        )
        out.append(f'<text x="{left + 10}" y="{pad + 14 * (i + 1)}" fill="{colour}">{name}</text>')
    return "\n".join([*out, "</svg>\n"])


def figures(runs: list[Run], reference_error: float, folder: Path, name: str) -> None:
    by = by_condition(runs)
    per_trial, per_second = {}, {}
    for condition, rs in by.items():
        curves = [hv_curve(r, reference_error, "macs") for r in rs]
        n = max(len(c) for c in curves)
        per_trial[condition] = [
            (i + 1, statistics.median(at(c, i + 1) for c in curves)) for i in range(n)
        ]
        end = max(r.seconds[-1] for r in rs if r.seconds)
        grid = np.linspace(0, end, 60)
        per_second[condition] = [
            (
                float(t),
                statistics.median(at_seconds(r, c, t) for r, c in zip(rs, curves, strict=True)),
            )
            for t in grid
        ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"search_quality_{name}_trials.svg").write_text(
        svg(per_trial, "trained trials", f"{name}: hypervolume against trials")
    )
    (folder / f"search_quality_{name}_seconds.svg").write_text(
        svg(per_second, "search seconds", f"{name}: hypervolume against wall time")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "digits.yaml")
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--conditions", nargs="+",
        default=["tpe", "nsga2", "random", "rl", "tpe+mo_asha", "nsga2+mo_asha",
                 "random+mo_asha", "rl+mo_asha", "sweep"],
    )  # fmt: skip
    parser.add_argument("--margin", type=float, default=0.10)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "search_quality")
    parser.add_argument("--figures", type=Path, help="write the SVG plots here")
    parser.add_argument("--summarise", action="store_true", help="only score finished runs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    default = yaml.safe_load(args.config.read_text())["search"].get("sampler", "tpe")
    for seed in args.seeds:  # interleaved, so that drift of the machine hits all alike
        for condition in args.conditions if not args.summarise else []:
            run = args.out / f"{condition}_{seed}"
            if complete(run):
                continue
            config = write_config(args.config, condition, args.budget, args.out)
            command = [sys.executable, str(ROOT / "cli.py"), "search", "--config", str(config)]
            command += ["--seed", str(seed), "--out", str(run)]
            command += ["--resume"] if (run / "run.json").is_file() else []
            print(" ".join(command), flush=True)
            subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    runs = [
        read_run(args.out / f"{c}_{s}", c, s)
        for c in args.conditions
        for s in args.seeds
        if complete(args.out / f"{c}_{s}")
    ]
    if not runs:
        print("no finished runs")
        return 1
    reference_error = runs[0].teacher_error + args.margin
    name = args.config.stem
    print(f"{name}: budget {args.budget}, seeds {args.seeds}, runs in {args.out}")
    summarise(runs, reference_error, args.budget, default)
    if args.figures:
        figures(runs, reference_error, args.figures, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
