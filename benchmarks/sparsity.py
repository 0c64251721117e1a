"""Unstructured sparsity on Fashion-MNIST, each technique against its control on one
architecture: iterative against one-shot, global or LAMP against local at equal sparsity,
lottery tickets (rewind, reinit) against inheriting the teacher's weights, and dynamic sparse
training (SET, RigL) against a static mask; a dense student beside them for the cost of
sparsity itself.

    python benchmarks/sparsity.py [--subset 10000] [--epochs 5] [--sparsity 0.8] [--seeds 0 1 2]
    python benchmarks/sparsity.py --conditions control LAMP     # some conditions only

One architecture (every block, half of each stage's channels, 8-bit weights, stem and head
dense), the config's teacher (from its cache, which must hold its first-epoch weights for
`rewind`), the same images, epochs and distillation; the conditions run interleaved per seed,
so drift of the machine hits them alike (benchmarks/_controlled.py). The control is one-shot,
local, inherit, static; every other row changes one thing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONTROL = {
    "sparsity_scope": "local",
    "sparsity_schedule": "one_shot",
    "sparse_training": "static",
    "init": "inherit",
}
CONDITIONS = {
    "control: one-shot, local, inherit, static": {},
    "global scope": {"sparsity_scope": "global"},
    "LAMP scope": {"sparsity_scope": "lamp"},
    "iterative schedule": {"sparsity_schedule": "iterative"},
    "init rewind (lottery ticket)": {"init": "rewind"},
    "init reinit (random, same masks)": {"init": "reinit"},
    "SET": {"sparse_training": "set"},
    "RigL": {"sparse_training": "rigl"},
    "dense (sparsity 0), for reference": {"dense": True},
}


def architecture(stages, sparsity: float, change: dict):
    from search_spaces import Architecture

    dense = change.get("dense", False)
    globals_ = {**CONTROL, **{k: v for k, v in change.items() if k != "dense"}}
    return Architecture.model_validate(
        {
            "techniques": ["depth", "channels", "sparsity", "weight_quant", "init"],
            "stages": [
                {
                    "blocks": s.num_blocks,
                    "channel_keep": 0.5,
                    "sparsity": 0.0 if dense else sparsity,
                    "bits": 8,
                }
                for s in stages
            ],
            "criterion": "l2",
            "stem_head_bits": 8,
            **globals_,
            "kd_temperature": 4.0,
            "kd_alpha": 0.9,
        }
    )


def main() -> int:
    from _controlled import arguments, compare, experiment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.8)
    args = arguments(parser)
    exp = experiment(args)
    if not exp.teacher.has_rewind:
        print("the cached teacher keeps no first-epoch weights: retrain it for `rewind`")
        return 2
    compare(
        exp,
        args,
        CONDITIONS,
        lambda change: architecture(exp.stages, args.sparsity, change),
        f"sparsity {args.sparsity} in every stage",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
