"""Activation fake-quantization: torch's fused op against `_act_quant.fake_quantize`.

    python benchmarks/fake_quant.py [--repeats 20] [--run RUN --trial N --rounds 3]

Part 1 times one forward (and one forward with backward) of each form on a float32 tensor of
(128, 64, 14, 14), a batch of a student's layer2 input on Fashion-MNIST, in both memory
orders, interleaved, and prints medians. With `--run` and `--trial`, part 2 runs that trial's
student as the finished proxy search RUN trained it (its subset and epochs, then val and
test), the two forms alternated in one process after a warm-up trial, and prints each one's
wall seconds, median and accuracies, which must be the same.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from automl.compress import _act_quant  # noqa: E402

Form = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def fused(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, _act_quant.QMAX)


FORMS: dict[str, Form] = {"fused": fused, "elementwise": _act_quant.fake_quantize}


def op_times(repeats: int) -> None:
    torch.manual_seed(0)
    quant = _act_quant.ActQuant()
    quant.low.fill_(-1.0)
    quant.high.fill_(3.0)
    scale, zero = quant.tensor_params()
    base = torch.randn(128, 64, 14, 14)
    print("| form | memory order | forward ms | forward + backward ms |\n|---|---|---|---|")
    for memory in (torch.contiguous_format, torch.channels_last):
        x = base.contiguous(memory_format=memory)
        times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in FORMS}
        for _ in range(repeats):
            for name, form in FORMS.items():
                start = time.perf_counter()
                with torch.no_grad():
                    form(x, scale, zero)
                times[name][0].append(time.perf_counter() - start)
                leaf = x.detach().requires_grad_()
                start = time.perf_counter()
                form(leaf, scale, zero).sum().backward()
                times[name][1].append(time.perf_counter() - start)
        order = "channels-last" if memory is torch.channels_last else "contiguous"
        for name, (forward, both) in times.items():
            print(
                f"| {name} | {order} | {statistics.median(forward) * 1e3:.2f} "
                f"| {statistics.median(both) * 1e3:.2f} |"
            )


def trial_times(run_path: Path, trial: int, rounds: int) -> None:
    from automl.experiment import prepare
    from automl.run.finished import open_search_run
    from automl.trial import run_trial

    run = open_search_run(run_path)
    arch = run.member(trial).architecture
    ctx = prepare(run.config).trial_context()
    run_trial(arch, ctx, 0)  # warm-up: makes the feature bank
    seconds: dict[str, list[float]] = {k: [] for k in FORMS}
    scores: dict[str, set[tuple[float, float]]] = {k: set() for k in FORMS}
    try:
        for _ in range(rounds):
            for name, form in FORMS.items():
                _act_quant.fake_quantize = form  # ActQuant looks it up at each call
                start = time.perf_counter()
                result, _ = run_trial(arch, ctx, run.trial_seed(trial))
                seconds[name].append(time.perf_counter() - start)
                scores[name].add((result.val_accuracy, result.test_accuracy))
    finally:
        _act_quant.fake_quantize = FORMS["elementwise"]
    for name in FORMS:
        walls = ", ".join(f"{s:.1f}" for s in seconds[name])
        print(
            f"trial {trial}, {name}: {walls} s, median {statistics.median(seconds[name]):.1f} s; "
            f"(val, test) {sorted(scores[name])}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--run", type=Path, help="a finished proxy search (part 2)")
    parser.add_argument("--trial", type=int, help="a front member of RUN (part 2)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    op_times(args.repeats)
    if args.run is not None and args.trial is not None:
        trial_times(args.run, args.trial, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
