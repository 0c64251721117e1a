"""Iterative channel pruning on Fashion-MNIST against one-shot, on one architecture: the same
channels kept by the same criterion, removed before the student trains (one-shot, the
control) or a few at a time while it trains (Zhu and Gupta's polynomial schedule, five
updates; `automl/compress/channels.py`).

    python benchmarks/channel_schedule.py [--keep 0.25] [--criteria synaptic l2] [--seeds 0 1 2]
    python benchmarks/channel_schedule.py --conditions iterative     # some conditions only

One architecture (every block, `--keep` of each stage's channels, fp32 weights), the config's
teacher from its cache, the same images, epochs and distillation for every condition, run
interleaved per seed (benchmarks/_controlled.py). An iterative student trains at the
teacher's width until its last update, so its seconds per trial are reported beside its
accuracy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def architecture(stages, keep: float, criterion: str, schedule: str):
    from search_spaces import Architecture

    return Architecture.model_validate(
        {
            "techniques": ["depth", "channels"],
            "stages": [{"blocks": s.num_blocks, "channel_keep": keep} for s in stages],
            "criterion": criterion,
            "channel_schedule": schedule,
            "kd_temperature": 4.0,
            "kd_alpha": 0.9,
        }
    )


def main() -> int:
    from _controlled import arguments, compare, experiment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=float, default=0.25)
    parser.add_argument("--criteria", nargs="+", default=["synaptic", "l2"])
    args = arguments(parser)
    exp = experiment(args)
    conditions = {
        f"{schedule}, {criterion}": (criterion, schedule.replace("-", "_"))
        for criterion in args.criteria
        for schedule in ("one-shot", "iterative")
    }
    compare(
        exp,
        args,
        conditions,
        lambda change: architecture(exp.stages, args.keep, *change),
        f"{args.keep} of every stage's channels kept, fp32 weights",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
