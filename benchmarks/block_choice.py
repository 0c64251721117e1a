"""Which blocks a student drops, on Fashion-MNIST: the last ones of each stage (`last`, the
control) against those whose residual branch changes their input least (`norm`) and those
whose removal alone changes the teacher's predictions least (`sensitivity`); see
`automl/compress/depth.py`.

    python benchmarks/block_choice.py --config FILE [--blocks 2 2 3 2] [--keep 0.5]
    python benchmarks/block_choice.py --config FILE --conditions norm    # some conditions only

resnet18 has one droppable block per stage, so the choice needs a deeper teacher: FILE names
one (resnet34: stages of 3, 4, 6 and 3 blocks). One architecture (`--blocks` per stage,
`--keep` of every stage's channels by l2, fp32 weights), the config's teacher from its cache,
the same images, epochs and distillation for every condition, run interleaved per seed
(benchmarks/_controlled.py). The blocks each choice drops are printed first, with the
teacher's validation accuracy without them (before any training).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHOICES = ("last", "norm", "sensitivity")


def architecture(blocks: list[int], keep: float, choice: str):
    from search_spaces import Architecture

    return Architecture.model_validate(
        {
            "techniques": ["depth", "channels"],
            "stages": [{"blocks": b, "channel_keep": keep} for b in blocks],
            "block_choice": choice,
            "criterion": "l2",
            "kd_temperature": 4.0,
            "kd_alpha": 0.9,
        }
    )


def show_dropped(exp, blocks: list[int]) -> None:
    """Print the blocks each choice drops from the teacher ('stage.index') and the validation
    accuracy of the teacher without them, before any training."""
    import copy

    from automl.compress.depth import blocks_to_drop
    from automl.stages import drop_blocks
    from automl.training import accuracy

    images = exp.data.example_input(64)  # the calibration batch of every trial
    for choice in CHOICES:
        model = copy.deepcopy(exp.teacher.model)
        chosen = blocks_to_drop(model, exp.stages, blocks, choice, images)
        drop_blocks(model, chosen)
        names = ", ".join(sorted(f"{b.seq_path}.{b.index}" for b in chosen))
        val = accuracy(model, exp.data.val, exp.device)
        print(f"{choice:12s} drops {names}; the teacher without them: val {val:.4f}", flush=True)


def main() -> int:
    from _controlled import arguments, compare, experiment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[2, 2, 3, 2])
    parser.add_argument("--keep", type=float, default=0.5)
    args = arguments(parser)
    exp = experiment(args)
    if len(args.blocks) != len(exp.stages):
        parser.error(f"--blocks needs {len(exp.stages)} values, one per stage of the teacher")
    show_dropped(exp, args.blocks)
    compare(
        exp,
        args,
        {choice: choice for choice in CHOICES},
        lambda choice: architecture(args.blocks, args.keep, choice),
        f"blocks {args.blocks} of {[s.num_blocks for s in exp.stages]}, {args.keep} of every "
        "stage's channels kept (l2), fp32 weights",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
