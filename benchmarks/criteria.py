"""Channel criteria on Fashion-MNIST: which channels a student keeps, chosen by each registered
criterion, on one architecture against the l2 norm (the default) as control; `random` is the
floor any criterion must clear.

    python benchmarks/criteria.py [--subset 10000] [--epochs 5] [--keep 0.25] [--seeds 0 1 2]
    python benchmarks/criteria.py --conditions l2 hessian     # some criteria only

One architecture (every block, `--keep` of each stage's channels, fp32 weights), the config's
teacher from its cache, the same images, epochs and distillation for every criterion
(benchmarks/_controlled.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def architecture(stages, keep: float, criterion: str):
    from search_spaces import Architecture

    return Architecture.model_validate(
        {
            "techniques": ["depth", "channels"],
            "stages": [{"blocks": s.num_blocks, "channel_keep": keep} for s in stages],
            "criterion": criterion,
            "kd_temperature": 4.0,
            "kd_alpha": 0.9,
        }
    )


def main() -> int:
    from _controlled import arguments, compare, experiment

    from automl.compress._criteria import list_criteria

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=float, default=0.25)
    args = arguments(parser)
    exp = experiment(args)
    names = ["l2", *(c for c in list_criteria() if c != "l2")]
    compare(
        exp,
        args,
        {name: name for name in names},
        lambda criterion: architecture(exp.stages, args.keep, criterion),
        f"{args.keep} of every stage's channels kept, fp32 weights",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
