"""Measured figures: latency as a median of timed calls, MACs and parameters, batches for
timing, and interleaved rounds that rank runners by their cost."""

from __future__ import annotations

import time

import torch
from torch import nn

from automl.measure import (
    batch_of,
    interleaved_latency_ms,
    latency_ms,
    macs_and_params,
    torch_threads,
)


def test_latency_is_a_median_of_timed_calls_with_a_fixed_thread_count():
    calls = []

    class Slow(nn.Module):
        def forward(self, x):
            calls.append(torch.get_num_threads())
            time.sleep(0.002)
            return x

    ms = latency_ms(Slow(), torch.zeros(1), torch.device("cpu"), repeats=30, warmup=3, threads=1)
    assert len(calls) == 33 and set(calls) == {1}
    assert 2.0 <= ms < 50.0


def test_macs_and_params_of_a_linear_layer():
    macs, params = macs_and_params(nn.Linear(8, 4), torch.zeros(1, 8))
    assert params == 8 * 4 + 4 and macs >= 8 * 4


def test_batch_of_repeats_images_to_the_exact_size():
    images = torch.arange(3.0).view(3, 1, 1, 1)
    batch = batch_of(images, 7)
    assert batch.shape == (7, 1, 1, 1) and batch.flatten().tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_interleaved_latency_ranks_runners_by_their_cost():
    figures = interleaved_latency_ms(
        {"slow": lambda: time.sleep(0.004), "fast": lambda: time.sleep(0.001)},
        rounds=3,
        calls=3,
        warmup=1,
    )
    assert set(figures) == {"slow", "fast"}
    assert figures["slow"] > figures["fast"] >= 1.0


def test_thread_count_is_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
