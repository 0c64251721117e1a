"""Controlled comparisons on one architecture: each condition changes one thing against a
control; every condition trains on the same images, epochs and distillation with the same
seeds, interleaved per seed so that drift of the machine hits them alike. Validation accuracy
(mean ± standard deviation over the seeds) is what a search would rank by; test accuracy is
reported beside it. Used by benchmarks/sparsity.py and benchmarks/criteria.py."""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def mean_sd(values: list[float], digits: int = 4, signed: bool = False) -> str:
    """'mean ± standard deviation' of `values` (sd 0 for a single value), `digits` decimals;
    `signed` puts a sign before the mean."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    sign = "+" if signed else ""
    return f"{statistics.mean(values):{sign}.{digits}f} ± {spread:.{digits}f}"


def arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The options every controlled comparison takes, parsed with `parser`'s own."""
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "fashion_mnist.yaml")
    parser.add_argument("--subset", type=int, default=10000, help="training images; 0: all")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, help="write every result here as JSON")
    parser.add_argument(
        "--conditions", nargs="+", help="run only the conditions whose names start so"
    )
    return parser.parse_args()


def experiment(args: argparse.Namespace):
    """The config's experiment with the comparison's proxy (subset, epochs); its teacher from
    the cache, or trained first."""
    from automl.config import load_config
    from automl.experiment import prepare

    cfg = load_config(args.config)
    subset = args.subset or None
    training = cfg.training.model_copy(update={"epochs": args.epochs, "train_subset": subset})
    cfg = cfg.model_copy(update={"training": training})
    return dataclasses.replace(prepare(cfg), config=cfg)


def compare(
    exp: Any,
    args: argparse.Namespace,
    conditions: dict[str, Any],
    architecture: Callable[[Any], Any],
    setting: str,
) -> dict[str, list[dict]]:
    """Train `architecture(change)` for each of `conditions` (name -> change) and seed; print a
    line per trial, then the table (`setting` describes what is held fixed). Returns the
    results by condition, written to `args.out` when given."""
    import torch

    from automl.trial import run_trial

    ctx = exp.trial_context()
    chosen = {
        name: change
        for name, change in conditions.items()
        if not args.conditions or any(name.startswith(c) for c in args.conditions)
    }
    results: dict[str, list[dict]] = {name: [] for name in chosen}
    for seed in args.seeds:
        for name, change in chosen.items():
            result, _ = run_trial(architecture(change), ctx, seed)
            results[name].append(result.model_dump())
            print(
                f"seed {seed} {name:40s} val {result.val_accuracy:.4f} test "
                f"{result.test_accuracy:.4f} {result.size_bytes / 1e3:.0f} kB "
                f"{result.train_seconds:.0f} s",
                flush=True,
            )
    if args.out:
        options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        args.out.write_text(json.dumps({"args": options, "results": results}, indent=2) + "\n")
    print(
        f"\n{args.subset or 'all'} training images, {args.epochs} epochs, {setting}, "
        f"seeds {args.seeds}, "
        f"{torch.get_num_threads()} threads"
    )
    print("| condition | val accuracy | test accuracy | packed kB | seconds per trial |")
    print("|---|---|---|---|---|")
    for name, rs in results.items():
        val = [r["val_accuracy"] for r in rs]
        test = [r["test_accuracy"] for r in rs]
        kb = statistics.mean(r["size_bytes"] for r in rs) / 1e3
        seconds = statistics.median(r["train_seconds"] for r in rs)
        print(
            f"| {name} | {mean_sd(val)} | {statistics.mean(test):.4f} | {kb:.0f} | {seconds:.0f} |"
        )
    return results
