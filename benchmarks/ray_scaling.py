"""Completed trials per hour on a Ray cluster with one and with two worker nodes.

    python benchmarks/ray_scaling.py [--budget 24] [--repeats 2] [--write]

Each measurement starts a fresh loopback cluster in a private network namespace
(tests/ray_cluster.py): a head node with no CPUs (it holds the driver and schedules
nothing) and N worker nodes of one CPU each; then runs the default digits search through
`--address` with the random sampler (the same architectures in the same order for every
setting), one CPU and one torch thread per trial. Throughput is completed trials divided
by the search's wall time as run.json records it (`sessions[-1].search_seconds`, which
includes Tune's start-up). Settings alternate (1, 2, 1, 2, ...) so that drift of the
machine hits both alike; the figure per setting is the median over repeats. `--write`
puts the result into BENCHMARKS.md. Needs the default teacher in .cache/teachers (run
`python cli.py teacher` first) and root or user namespaces for `unshare -n`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import statistics
import sys
import tempfile
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ray_cluster import LoopbackCluster  # noqa: E402

MARK_BEGIN = "<!-- ray_scaling:begin -->"
MARK_END = "<!-- ray_scaling:end -->"


def measure(workers: int, budget: int, out: Path) -> dict[str, float]:
    # Ray's default health checks: the fast ones of the tests cost CPU the trials share here.
    cluster = LoopbackCluster(head_cpus=0, fast_health_checks=False).start(workers=workers)
    try:
        proc = cluster.run(
            [
                sys.executable,
                str(ROOT / "cli.py"),
                "search",
                "--backend",
                "ray",
                "--address",
                cluster.address,
                "--budget",
                str(budget),
                "--sampler",
                "random",
                "--cpus-per-trial",
                "1",
                "--out",
                str(out),
            ],
            cwd=ROOT,
        )
        if proc.returncode:
            raise RuntimeError(f"search failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    finally:
        cluster.stop()
    run = json.loads((out / "run.json").read_text())
    seconds = run["sessions"][-1]["search_seconds"]
    with (out / "trials.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["state"] == "COMPLETE"]
    done, nodes = len(rows), len({r["node_id"] for r in rows})
    # Steady state: completions between the first and the last, without start-up and drain.
    study = optuna.load_study(study_name=run["study_name"], storage=f"sqlite:///{out}/study.db")
    ends = sorted(t.datetime_complete for t in study.trials if t.state.name == "COMPLETE")
    steady = (len(ends) - 1) / (ends[-1] - ends[0]).total_seconds()
    return {
        "completed": done,
        "seconds": seconds,
        "per_hour": 3600 * done / seconds,
        "steady_per_hour": 3600 * steady,
        "nodes_used": nodes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for workers in (1, 2):
                m = measure(workers, args.budget, Path(tmp) / f"w{workers}-r{r}")
                results[workers].append(m)
                print(
                    f"workers={workers} repeat={r}: {m['completed']} trials in "
                    f"{m['seconds']:.1f} s = {m['per_hour']:.0f}/h on {m['nodes_used']} nodes",
                    flush=True,
                )
    per_hour = {w: statistics.median(m["per_hour"] for m in ms) for w, ms in results.items()}
    steady = {w: statistics.median(m["steady_per_hour"] for m in ms) for w, ms in results.items()}
    ratio = per_hour[2] / per_hour[1]
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; budget {args.budget} "
        f"completed trials per run, {args.repeats} runs per setting, alternating.",
        "",
        "| worker nodes | completed trials per hour, whole search (median) | runs | "
        "steady state (median) |",
        "| --- | --- | --- | --- |",
        *(
            f"| {w} | {per_hour[w]:.0f} | "
            + ", ".join(f"{m['per_hour']:.0f}" for m in results[w])
            + f" | {steady[w]:.0f} |"
            for w in (1, 2)
        ),
        "",
        f"Two workers / one worker: **{ratio:.2f}x** over the whole search (search_seconds, "
        f"Ray start-up included), {steady[2] / steady[1]:.2f}x in the steady state (first to "
        "last completion).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        path = ROOT / "BENCHMARKS.md"
        doc = path.read_text()
        block = f"{MARK_BEGIN}\n{text}\n{MARK_END}"
        if MARK_BEGIN in doc:
            doc = re.sub(f"{re.escape(MARK_BEGIN)}.*?{re.escape(MARK_END)}", block, doc, flags=re.S)
        else:
            doc += (
                "\n## Ray scaling (issue: distributed search)\n\n"
                "Command: `python benchmarks/ray_scaling.py --write`.\n\n" + block + "\n"
            )
        path.write_text(doc)


if __name__ == "__main__":
    main()
