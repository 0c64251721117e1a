"""Feature distillation (FitNets) against logits alone, on Fashion-MNIST: the same student
distilled with the stage-output loss at several weights (`kd_feature_weight`, beta) and
without it (beta 0, the control).

    python benchmarks/feature_kd.py [--subset 10000] [--epochs 5] [--keep 0.125] [--seeds 0 1 2]
    python benchmarks/feature_kd.py --weights 0 1 --subset 0 --epochs 9 \
        --architecture runs/fashion_mnist/models/final_0061.json

One architecture: every block, `--keep` of each stage's channels, 8-bit weights; or the one
in `--architecture` (a JSON file holding it, or a model's `.json` beside its weights, as a
run's models/ keeps them). The config's teacher from its cache, the same images, epochs,
seeds and logit distillation for every weight (benchmarks/_controlled.py); only
`kd_feature_weight` changes. The teacher's stage outputs are cached once for the training
images (automl/feature_kd.py). `--subset 0` trains on all of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def architecture(stages, keep: float, weight: float):
    from search_spaces import Architecture

    return Architecture.model_validate(
        {
            "techniques": ["depth", "channels", "weight_quant"],
            "stages": [{"blocks": s.num_blocks, "channel_keep": keep, "bits": 8} for s in stages],
            "criterion": "l2",
            "stem_head_bits": 8,
            "kd_temperature": 4.0,
            "kd_alpha": 0.9,
            "kd_feature_weight": weight,
        }
    )


def from_file(path: Path, weight: float):
    import json

    from search_spaces import Architecture

    doc = json.loads(path.read_text())
    arch = Architecture.model_validate(doc.get("architecture", doc))
    return arch.model_copy(update={"kd_feature_weight": weight})


def main() -> int:
    from _controlled import arguments, compare, experiment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=float, default=0.125)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 1.0, 4.0])
    parser.add_argument("--architecture", type=Path, help="a JSON file holding the student")
    args = arguments(parser)
    exp = experiment(args)
    compare(
        exp,
        args,
        {("logits only" if w == 0 else f"features, beta {w:g}"): w for w in args.weights},
        (lambda w: from_file(args.architecture, w))
        if args.architecture
        else (lambda w: architecture(exp.stages, args.keep, w)),
        f"the architecture of {args.architecture}"
        if args.architecture
        else f"{args.keep} of every stage's channels, every block, 8-bit weights",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
