"""Augmentation and consistent distillation on Fashion-MNIST: no augmentation, against teacher
logits cached for K fixed views per image, against a teacher forward per batch (online).

    python benchmarks/augmentation.py [--subset 10000] [--epochs 5] [--seeds 0 1 2]

One student architecture (every stage at half its channels, all blocks, fp32), the same
teacher (trained with augmentation, from the cache), the same images and epochs; the modes
run interleaved per seed, so machine drift hits them alike. Prints validation and test
accuracy (mean and spread over the seeds) and median seconds per trial; the cached mode's
one-off cost (teacher logits of K views, shared by every trial of a search) separately.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch
    from _controlled import mean_sd

    from automl.augment import AugmentConfig, ViewBank, make_views
    from automl.config import load_config
    from automl.experiment import prepare
    from automl.trial import run_trial
    from search_spaces import Architecture
    from teachers.cache import view_bank

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "fashion_mnist.yaml")
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    cfg = load_config(args.config)
    exp = prepare(cfg)
    training = cfg.training.model_copy(
        update={
            "epochs": args.epochs,
            "train_subset": args.subset,
            "kd_views": args.views,
            "augment": True,
        }
    )
    exp = dataclasses.replace(exp, config=cfg.model_copy(update={"training": training}))
    start = time.perf_counter()
    bank = view_bank(exp.teacher, exp.data, args.views, exp.device)
    bank_seconds = time.perf_counter() - start
    base = dataclasses.replace(exp.trial_context(), bank=bank)
    plain = dataclasses.replace(exp.data, augment=AugmentConfig())
    n = len(exp.data.train)
    contexts = {
        "none": dataclasses.replace(
            base,
            data=plain,
            bank=ViewBank(make_views(n, 1, AugmentConfig(), 0), exp.teacher.train_logits[None]),
        ),
        f"cached, K={args.views}": base,
        "online": dataclasses.replace(base, bank=None),
    }
    stages = [{"channel_keep": 0.5, "blocks": s.num_blocks, "bits": 32} for s in exp.stages]
    arch = Architecture.model_validate(
        {
            "stages": stages,
            "criterion": "l2",
            "stem_head_bits": 32,
            "kd_temperature": 4.0,
            "kd_alpha": 0.9,
        }
    )
    results: dict[str, list] = {mode: [] for mode in contexts}
    for seed in args.seeds:
        for mode, ctx in contexts.items():
            result, _ = run_trial(arch, ctx, seed)
            results[mode].append(result)
            print(
                f"seed {seed} {mode:12s} val {result.val_accuracy:.4f} test "
                f"{result.test_accuracy:.4f} {result.train_seconds:.1f} s",
                flush=True,
            )
    print(
        f"\n{args.subset} training images, {args.epochs} epochs, seeds {args.seeds}, "
        f"{torch.get_num_threads()} threads; cached views: {bank_seconds:.0f} s once per teacher"
    )
    print("| augmentation / KD targets | val accuracy | test accuracy | seconds per trial |")
    print("|---|---|---|---|")
    for mode, rs in results.items():
        val = [r.val_accuracy for r in rs]
        test = [r.test_accuracy for r in rs]
        print(
            f"| {mode} | {mean_sd(val)} | "
            f"{statistics.mean(test):.4f} | {statistics.median(r.train_seconds for r in rs):.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
