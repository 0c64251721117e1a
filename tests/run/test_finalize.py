"""Proxy search, then finalize: the front retrained on every training image, both figures in
pareto.json, the front rebuilt on the full ones, the proxy's rank correlation, resumable."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from scipy.stats import kendalltau

from automl.config import TrainingConfig, validate_config
from automl.pareto import rank_correlation
from automl.run.documents import Finalized, FrontMember, ParetoDocument, read_document
from automl.run.finalize import (
    PROXY_PARETO,
    _searched,
    best_under,
    final_name,
    finalize,
    median_macs,
    retraining_epochs,
    spread,
)
from automl.run.finished import open_search_run
from automl.run.search import run_search
from automl.training import accuracy
from tests.conftest import cli_in_process, tiny_raw


@pytest.fixture(scope="module")
def proxy_run(teacher_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("proxy") / "tiny"
    # the smallest student first: its size is the least of any, so it is on every front, and
    # its MACs set the front's low end, whatever the timings put on it beside
    smallest = {"blocks": "low", "channel_keep": "low", "bits": 4}
    raw = tiny_raw(teacher_cache, out, budget=5, enqueue=[smallest])
    raw["training"] = {"epochs": 1, "train_subset": 200, "final_epochs": 2}
    summary = run_search(validate_config(raw, "test"))
    return out, summary


@pytest.fixture
def proxy_copy(proxy_run, tmp_path) -> Path:
    """A copy of the proxy run of this test's own: the tests below finalize it again, delete
    files of it and change its settings, so none may see another's changes."""
    return Path(shutil.copytree(proxy_run[0], tmp_path / "tiny"))


def test_search_finalizes_the_proxy_front(proxy_run):
    out, summary = proxy_run
    run = open_search_run(out)
    done = run.pareto.finalized
    assert done is not None and summary.finalized == done
    assert (done.epochs, done.proxy_epochs, done.proxy_train_images) == (2, 1, 200)
    assert done.train_images == run.doc.data.train > 200
    assert set(m.trial for m in run.front) == set(done.retrained) - set(done.dropped)
    proxy = json.loads((out / "proxy_pareto.json").read_text())
    assert [m["trial"] for m in proxy["front"]] == done.retrained and "finalized" not in proxy
    data = run.load_data()
    for member in run.front:
        assert member.weights == final_name(member.trial)
        assert member.proxy is not None and member.proxy.val_accuracy != member.val_accuracy
        model, _ = run.load_model(member, data)  # the retrained weights, deployed form
        assert accuracy(model, data.val, torch.device("cpu")) == pytest.approx(
            member.val_accuracy, abs=1e-6
        )
    # the proxy's rank correlation, recomputed from the figures on disk: the proxy front's
    # validation accuracies against each retrained model's (its file's meta)
    proxy_val = {m["trial"]: m["val_accuracy"] for m in proxy["front"]}
    full_val = {
        t: json.loads((out / final_name(t)).with_suffix(".json").read_text())["result"][
            "val_accuracy"
        ]
        for t in done.retrained
    }
    tau = kendalltau([proxy_val[t] for t in done.retrained], [full_val[t] for t in done.retrained])
    if math.isnan(tau.statistic):
        assert done.kendall_tau is None
    else:
        assert done.kendall_tau == pytest.approx(tau.statistic, abs=1e-4)


def test_finalize_again_reuses_what_is_done_and_redoes_what_is_missing(proxy_copy):
    out = proxy_copy
    run = open_search_run(out)
    retrained = run.pareto.finalized.retrained
    stamps = {t: (out / final_name(t)).stat().st_mtime_ns for t in retrained}
    (out / final_name(retrained[0])).with_suffix(".json").unlink()  # interrupted there
    again = finalize(run)
    assert again.finalized.retrained == retrained
    assert [m.trial for m in again.front] == [m.trial for m in run.front]
    fresh = {t: (out / final_name(t)).stat().st_mtime_ns for t in retrained}
    assert fresh[retrained[0]] != stamps[retrained[0]]
    assert all(fresh[t] == stamps[t] for t in retrained[1:])
    result = cli_in_process("finalize", out)
    assert result.exit_code == 0 and "Kendall tau" in result.stdout


def test_finalize_at_equal_compute_trains_smaller_models_longer(proxy_copy):
    out = proxy_copy
    run = open_search_run(out)
    training = run.config.training.model_copy(update={"final_max_epochs": 4})
    config = run.config.model_copy(update={"training": training})
    run = dataclasses.replace(run, doc=run.doc.model_copy(update={"config": config}))
    members = read_document(out / PROXY_PARETO, ParetoDocument).front
    median = median_macs([m.macs for m in members])
    expected = {m.trial: retraining_epochs(m.macs, median, training) for m in members}
    assert expected[max(members, key=lambda m: m.macs).trial] == 2
    assert max(expected.values()) > 2  # the front spreads its MACs enough to tell
    stamps = {t: (out / final_name(t)).stat().st_mtime_ns for t in expected}
    done = finalize(run).finalized
    assert done.max_epochs == 4 and done.trial_epochs == expected
    for trial, epochs in expected.items():
        meta = json.loads((out / final_name(trial)).with_suffix(".json").read_text())
        assert meta["result"]["epochs"] == epochs
        # a model already retrained for its epochs is reused, any other trained again
        reused = (out / final_name(trial)).stat().st_mtime_ns == stamps[trial]
        assert reused == (epochs == 2)


def test_finalize_retrains_at_most_final_models_spread_over_the_front(proxy_copy):
    out = proxy_copy
    run = open_search_run(out)
    members = read_document(out / PROXY_PARETO, ParetoDocument).front
    assert len(members) >= 3  # the fixture's front is wide enough to leave one out
    training = run.config.training.model_copy(update={"final_models": 2})
    config = run.config.model_copy(update={"training": training})
    run = dataclasses.replace(run, doc=run.doc.model_copy(update={"config": config}))
    done = finalize(run).finalized
    kept = spread(members, 2)
    smallest, largest = min(members, key=lambda m: m.macs), max(members, key=lambda m: m.macs)
    assert {m.trial for m in kept} == {smallest.trial, largest.trial}
    assert done.models == 2 and done.retrained == [m.trial for m in kept]
    assert done.not_retrained == [m.trial for m in members if m not in kept]
    assert {m.trial for m in open_search_run(out).front} <= set(done.retrained)
    assert not (out / final_name(done.not_retrained[0])).exists()  # no stale weights beside


def test_finalize_retrains_the_best_student_under_each_parameter_limit(proxy_copy):
    out = proxy_copy
    run = open_search_run(out)
    searched = _searched(run)
    assert len(searched) == 5  # every trained trial of the budget, on the front or not
    params = sorted({m.params for m in searched})
    assert len(params) >= 2
    limits = [params[0], params[len(params) // 2], params[0] - 1]  # the last: none fits
    expected = {limit: m.trial for limit, m in best_under(searched, limits).items()}
    assert set(expected) == set(limits[:2])
    result = cli_in_process("finalize", out, *(f"--params-limit={limit}" for limit in limits))
    assert result.exit_code == 0, result.output
    done = open_search_run(out).pareto.finalized
    assert done.best_under == expected
    assert set(expected.values()) <= set(done.retrained)
    for limit, trial in expected.items():
        assert f"best under {limit:,} parameters: trial {trial}" in result.stdout
        meta = json.loads((out / final_name(trial)).with_suffix(".json").read_text())
        assert meta["result"]["params"] <= limit  # retrained at full fidelity, same student
    again = finalize(open_search_run(out))  # the run's own limits: none
    assert again.finalized.best_under == {}


def test_bad_parameter_limit_is_a_clear_error(proxy_run):
    out, _ = proxy_run
    result = cli_in_process("finalize", out, "--params-limit", "0")
    assert result.exit_code == 2 and "params-limit" in result.stderr


def _member(trial: int, macs: int, val: float = 0.9, params: int = 0) -> FrontMember:
    return FrontMember.model_construct(trial=trial, macs=macs, val_accuracy=val, params=params)


def test_best_under_takes_the_best_accuracy_that_fits_each_limit():
    members = [_member(0, 1, 0.80, 90), _member(1, 1, 0.85, 100), _member(2, 1, 0.85, 95)]
    members += [_member(3, 1, 0.95, 500), _member(4, 1, 0.95, 400)]
    chosen = best_under(members, [89, 99, 100, 1_000])
    assert {limit: m.trial for limit, m in chosen.items()} == {99: 2, 100: 2, 1_000: 4}


def test_spread_keeps_the_ends_and_one_of_each_crowd():
    front = [_member(0, 1_000), _member(1, 1_100, 0.8), _member(2, 1_100, 0.85)]
    front += [_member(3, 10_000), _member(4, 100_000), _member(5, 100_000, 0.95)]
    assert [m.trial for m in spread(front, 3)] == [0, 3, 5]  # 5: the better of two at 100k
    assert [m.trial for m in spread(front, 4)] == [0, 2, 3, 5]
    assert spread(front, None) == front and spread(front, 6) == front
    same = [_member(7, 500, 0.7), _member(8, 500, 0.9), _member(9, 500, 0.8)]
    assert [m.trial for m in spread(same, 2)] == [8, 9]
    assert median_macs([5, 1, 100, 7]) == 5 and median_macs([3]) == 3


def test_retraining_epochs_match_the_reference_model_s_compute_up_to_the_cap():
    same = TrainingConfig(epochs=1, final_epochs=3)
    equal = TrainingConfig(epochs=1, final_epochs=3, final_max_epochs=15)
    assert [retraining_epochs(m, 100, same) for m in (100, 50, 1)] == [3, 3, 3]
    assert [retraining_epochs(m, 100, equal) for m in (1000, 100, 90, 50, 20, 19, 1)] == [
        3,  # larger than the reference: final_epochs
        3,
        3,  # 3.33 rounds to 3: never below final_epochs
        6,
        15,
        15,  # 15.8: the cap
        15,
    ]
    assert retraining_epochs(0, 100, equal) == 15  # a model of no MACs cannot divide by zero
    assert equal.is_proxy and TrainingConfig(epochs=3, final_max_epochs=9).is_proxy
    assert not TrainingConfig(epochs=3, final_max_epochs=3).is_proxy


def test_finalized_says_the_span_of_its_models_epochs():
    common = dict(epochs=3, train_images=9, proxy_epochs=1, proxy_train_images=3, retrained=[1, 2])
    done = Finalized(**common, trial_epochs={1: 3, 2: 10}, dropped=[], kendall_tau=1, seconds=1)
    assert done.epochs_said() == "3 to 10"
    assert done.model_copy(update={"trial_epochs": {1: 3, 2: 3}}).epochs_said() == "3"
    before = Finalized(**common, dropped=[], kendall_tau=None, seconds=1)  # no trial_epochs
    assert before.epochs_said() == "3"


def test_rank_correlation():
    assert rank_correlation([0.1, 0.2, 0.3], [0.5, 0.6, 0.7]) == 1.0
    assert rank_correlation([0.1, 0.2, 0.3], [0.7, 0.6, 0.5]) == -1.0
    assert rank_correlation([0.1], [0.2]) is None
    assert rank_correlation([0.1, 0.1], [0.2, 0.3]) is None


def test_finalize_of_a_missing_run_is_a_clear_error(tmp_path):
    result = cli_in_process("finalize", tmp_path / "nothing")
    assert result.exit_code == 2 and "no run directory" in result.stderr
