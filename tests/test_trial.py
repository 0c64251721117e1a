"""One trial: a smaller student scored without running the teacher, reproducibly."""

from __future__ import annotations

import optuna
import pytest
import torch

from automl.training import accuracy
from automl.trial import run_trial
from search_spaces import create_search_space


def test_trial_scores_a_smaller_student_without_running_the_teacher(tiny):
    ctx = tiny.trial_context()
    teacher = ctx.teacher
    calls = []
    handle = teacher.register_forward_hook(
        lambda m, i, o: calls.append(1) if m is teacher else None
    )
    try:
        arch = (
            create_search_space()
            .bind(ctx.stages)
            .sample(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3)).ask())
        )
        result, model = run_trial(arch, ctx, seed=0)
    finally:
        handle.remove()
    assert calls == []  # KD used the cached logits
    # the scores are the returned student's, and it learned (ten classes: chance is 0.1)
    val = accuracy(model, ctx.data.val, torch.device("cpu"))
    assert val == pytest.approx(result.val_accuracy, abs=1e-6) and val > 0.2
    assert result.latency_ms > 0 and result.macs > 0 and result.epochs == 1
    assert result.params == sum(p.numel() for p in model.parameters())
    assert result.params < sum(p.numel() for p in teacher.parameters())
    assert result.size_bytes < result.params * 4 or all(s["bits"] == 32 for s in arch.stages)


def test_the_same_seed_gives_the_same_student_and_scores(tiny):
    ctx = tiny.trial_context()
    arch = (
        create_search_space()
        .bind(ctx.stages)
        .sample(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5)).ask())
    )
    first, _ = run_trial(arch, ctx, seed=11)
    again, _ = run_trial(arch, ctx, seed=11)
    assert (again.val_accuracy, again.size_bytes, again.macs) == (
        first.val_accuracy,
        first.size_bytes,
        first.macs,
    )
