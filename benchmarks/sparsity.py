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
so drift of the machine hits them alike. The control is one-shot, local, inherit, static;
every other row changes one thing. Validation accuracy (mean ± standard deviation over the
seeds) is what a search would rank by; test accuracy is reported beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
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
    import torch

    from automl.config import load_config
    from automl.experiment import prepare
    from automl.trial import run_trial

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "fashion_mnist.yaml")
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, help="write every result here as JSON")
    parser.add_argument(
        "--conditions", nargs="+", help="run only the conditions whose names start so"
    )
    args = parser.parse_args()

    cfg = load_config(args.config)
    training = cfg.training.model_copy(update={"epochs": args.epochs, "train_subset": args.subset})
    cfg = cfg.model_copy(update={"training": training})
    exp = dataclasses.replace(prepare(cfg), config=cfg)
    ctx = exp.trial_context()
    if ctx.rewind is None:
        print("the cached teacher keeps no first-epoch weights: retrain it for `rewind`")
        return 2
    chosen = {
        name: change
        for name, change in CONDITIONS.items()
        if not args.conditions or any(name.startswith(c) for c in args.conditions)
    }
    results: dict[str, list[dict]] = {name: [] for name in chosen}
    for seed in args.seeds:
        for name, change in chosen.items():
            arch = architecture(exp.stages, args.sparsity, change)
            result, _ = run_trial(arch, ctx, seed)
            results[name].append(result.model_dump())
            print(
                f"seed {seed} {name:40s} val {result.val_accuracy:.4f} test "
                f"{result.test_accuracy:.4f} {result.size_bytes / 1e3:.0f} kB "
                f"{result.train_seconds:.0f} s",
                flush=True,
            )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"config": str(args.config), "out": str(args.out)},
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )
    print(
        f"\n{args.subset} training images, {args.epochs} epochs, sparsity {args.sparsity} in "
        f"every stage, seeds {args.seeds}, {torch.get_num_threads()} threads"
    )
    print("| condition | val accuracy | test accuracy | packed kB | seconds per trial |")
    print("|---|---|---|---|---|")
    for name, rs in results.items():
        val = [r["val_accuracy"] for r in rs]
        test = [r["test_accuracy"] for r in rs]
        spread = statistics.stdev(val) if len(val) > 1 else 0.0
        kb = statistics.mean(r["size_bytes"] for r in rs) / 1e3
        seconds = statistics.median(r["train_seconds"] for r in rs)
        print(
            f"| {name} | {statistics.mean(val):.4f} ± {spread:.4f} | "
            f"{statistics.mean(test):.4f} | {kb:.0f} | {seconds:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
