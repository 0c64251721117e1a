"""Measured figures of a model: latency, packed size, MACs and parameters."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch_pruning as tp
from torch import nn


@contextmanager
def torch_threads(n: int):
    """Run the block with `n` intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@torch.inference_mode()
def latency_ms(
    model: nn.Module,
    example: torch.Tensor,
    device: torch.device,
    *,
    repeats: int = 50,
    warmup: int = 10,
    threads: int = 1,
) -> float:
    """Median wall time of `repeats` forward passes on `example` after `warmup` untimed ones."""
    model = model.to(device).eval()
    x = example.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch_threads(threads):
        for _ in range(warmup):
            model(x)
        sync()
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def macs_and_params(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """Multiply-accumulates of one forward pass on `example`, and the parameter count."""
    macs, params = tp.utils.count_ops_and_params(model.cpu().eval(), example.cpu())
    return int(macs), int(params)


def batch_of(images: torch.Tensor, n: int) -> torch.Tensor:
    """A batch of exactly `n` inputs: `images` repeated as often as needed, then cut."""
    reps = -(-n // len(images))
    return images.repeat(reps, 1, 1, 1)[:n].contiguous()


def interleaved_latency_ms(
    runners: dict[str, Callable[[], object]],
    *,
    rounds: int = 7,
    calls: int = 10,
    warmup: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Median latency of each runner, measured side by side: in every round each runner (in
    a fresh random order) makes `warmup` untimed and `calls` timed calls; the figure is the
    median over rounds of each round's median. Drifts of the machine (clock, other load) hit
    every runner alike, so the figures compare with each other."""
    rng = random.Random(seed)
    per_round: dict[str, list[float]] = {key: [] for key in runners}
    keys = list(runners)
    for _ in range(rounds):
        rng.shuffle(keys)
        for key in keys:
            run = runners[key]
            for _ in range(warmup):
                run()
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            per_round[key].append(statistics.median(times))
    return {key: statistics.median(v) * 1e3 for key, v in per_round.items()}
