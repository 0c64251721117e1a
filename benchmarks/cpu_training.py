"""CPU training: what memory order, bfloat16 and the small-input stem cost, and whether
bfloat16 training stays finite.

    python benchmarks/cpu_training.py [--steps 8] [--batch 128]

Part 1 times training steps (forward, backward, AdamW) of resnet18 on a 28 px grey batch, the
size of Fashion-MNIST, for each stem (ImageNet; `teacher.small_input`), memory order
(contiguous; channels-last, what `fit` uses) and precision (float32; bfloat16 autocast),
interleaved, and prints the median step and the implied seconds per epoch of 54,000 images.
Part 2 trains the tests' digits teacher (resnet18, 16 px, 6 epochs) through `fit` in float32
and under bfloat16 autocast, each in a fresh process, and counts non-finite weights: the reason
`fit` autocasts on CUDA only (`automl.training.bf16_autocast`).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def step_times(steps: int, batch: int) -> None:
    import torch
    import torch.nn.functional as F

    from teachers.load import create_teacher

    settings = [
        (small, channels_last, bf16)
        for small in (False, True)
        for channels_last in (False, True)
        for bf16 in (False, True)
    ]
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    for _ in range(2):  # two interleaved rounds
        for small, channels_last, bf16 in settings:
            torch.manual_seed(0)
            model = create_teacher("resnet18", 1, 10, small_input=small).train()
            order = torch.channels_last if channels_last else torch.contiguous_format
            model = model.to(memory_format=order)
            inputs = x.contiguous(memory_format=order)
            optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
            for i in range(steps):
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = F.cross_entropy(model(inputs), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if i >= 2:  # the first steps warm oneDNN's caches
                    times[(small, channels_last, bf16)].append(time.perf_counter() - start)
    print(f"resnet18, batch {batch}, 28 px, {torch.get_num_threads()} threads")
    print("| stem | memory order | precision | ms per step (median) | s per 54,000 images |")
    print("|---|---|---|---|---|")
    for (small, channels_last, bf16), ts in times.items():
        step = statistics.median(ts)
        print(
            f"| {'small_input' if small else 'ImageNet'} | "
            f"{'channels-last' if channels_last else 'contiguous'} | "
            f"{'bfloat16' if bf16 else 'float32'} | {1000 * step:.0f} | "
            f"{step * 54000 / batch:.0f} |",
            flush=True,
        )


def finite_check(precision: str) -> str:
    """One training of the digits teacher in this process; its table row."""
    import torch

    from automl import training
    from automl.data import load_data
    from automl.data.digits import DigitsConfig
    from automl.training import FitSettings, cross_entropy_loss, fit
    from teachers.load import create_teacher

    amp = precision == "bfloat16"
    data = load_data(DigitsConfig(image_size=16))
    torch.manual_seed(0)
    model = create_teacher("resnet18", data.in_chans, data.num_classes)
    training.bf16_autocast = lambda device: amp  # as if fit autocast on the CPU
    start = time.perf_counter()
    fit(
        model,
        data.train,
        cross_entropy_loss,
        FitSettings(6, 3e-3, 5e-4, 64),
        torch.device("cpu"),
        0,
    )
    seconds = time.perf_counter() - start
    bad = {
        k: int((~v.isfinite()).sum())
        for k, v in model.state_dict().items()
        if v.is_floating_point() and not v.isfinite().all()
    }
    return f"| {precision} | {sum(bad.values())} | {', '.join(bad) or '-'} | {seconds:.1f} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per precision")
    parser.add_argument("--finite", choices=["float32", "bfloat16"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 3:
        parser.error("--steps: at least 3 (the first 2 are not timed)")
    if args.finite:  # one fresh process: the failure depends on what the process ran before
        print(finite_check(args.finite))
        return 0
    step_times(args.steps, args.batch)
    print(
        "\n| digits teacher, 16 px, 6 epochs, a fresh process each | non-finite weights "
        "| tensors holding them | s |\n|---|---|---|---|",
        flush=True,
    )
    for _ in range(args.rounds):
        for precision in ("bfloat16", "float32"):
            run = [sys.executable, __file__, "--finite", precision]
            out = subprocess.run(run, capture_output=True, text=True, check=True).stdout
            print(out.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
