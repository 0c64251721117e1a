"""The search's limits: constraint values for the sampler, the reasons in words, and a
candidate that breaks a latency or size limit rejected before it trains."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from automl.constraints import Limits, Rejected
from automl.trial import Scores, run_trial
from search_spaces import SearchSpaceConfig


def scores(val=0.9, latency=2.0, size=50_000) -> Scores:
    return Scores(
        val_accuracy=val,
        test_accuracy=val,
        latency_ms=latency,
        size_bytes=size,
        params=1,
        macs=1,
        train_seconds=1.0,
    )


def test_constraint_values_are_positive_only_where_a_limit_breaks():
    limits = Limits(max_latency_ms=1.5, max_size_kb=100, min_accuracy=0.95)
    assert limits.any and not Limits().any
    found = limits.constraints(scores())
    assert found == pytest.approx({"latency_ms": 0.5, "size_kb": -50.0, "val_accuracy": 0.05})
    assert limits.broken(scores()) == (
        "latency 2.000 ms > search.max_latency_ms 1.5; val_accuracy 0.9000 < search.min_accuracy "
        "0.95"
    )
    assert limits.constraints(scores(), trained=False)["val_accuracy"] == 0.0  # not judged
    assert limits.broken(scores(size=200_000), sized=False).startswith("latency")
    assert Limits(max_size_kb=100).broken(scores()) == ""


def test_a_candidate_over_the_size_limit_is_measured_and_not_trained(tiny):
    ctx = dataclasses.replace(tiny.trial_context(), limits=Limits(max_size_kb=1_000))
    space = SearchSpaceConfig.model_validate(
        {"channel_keep": 1.0, "bits": 32, "stem_head_bits": 32}
    ).bind(tiny.stages)
    arch = space.sample(_First())
    with pytest.raises(Rejected) as caught:
        run_trial(arch, ctx, seed=0)
    measured = caught.value.scores
    assert measured.epochs == 0 and measured.train_seconds == 0 and measured.val_accuracy == 0
    assert measured.size_bytes > 1_000_000 and measured.latency_ms > 0 and measured.macs > 0
    assert str(caught.value).startswith("rejected before training: size ")
    # within the limit: trained as usual (on 128 images, to be quick)
    small = dataclasses.replace(ctx, limits=Limits(max_size_kb=10**6), subset=torch.arange(128))
    result, _ = run_trial(arch, small, seed=0)
    assert result.epochs == 1 and result.size_bytes == measured.size_bytes
    assert result.macs == measured.macs and result.params == measured.params


class _First:
    """A suggester that takes the low end of every range and the first choice."""

    def suggest_int(self, name, low, high, step=1):
        return low

    def suggest_float(self, name, low, high, step=None, log=False):
        return low

    def suggest_categorical(self, name, choices):
        return choices[0]
