"""Proxy search, then finalize: the front retrained on every training image, both figures in
pareto.json, the front rebuilt on the full ones, the proxy's rank correlation, resumable."""

from __future__ import annotations

import json

import pytest
import torch

from automl.config import validate_config
from automl.run.finalize import final_name, finalize, rank_correlation
from automl.run.finished import open_search_run
from automl.run.search import run_search
from automl.training import accuracy
from tests.conftest import cli_in_process, tiny_raw


@pytest.fixture(scope="module")
def proxy_run(teacher_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("proxy") / "tiny"
    raw = tiny_raw(teacher_cache, out, budget=5)
    raw["training"] = {"epochs": 1, "train_subset": 200, "final_epochs": 2}
    summary = run_search(validate_config(raw, "test"))
    return out, summary


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
    assert done.kendall_tau is None or -1 <= done.kendall_tau <= 1


def test_finalize_again_reuses_what_is_done_and_redoes_what_is_missing(proxy_run):
    out, _ = proxy_run
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


def test_rank_correlation():
    assert rank_correlation([0.1, 0.2, 0.3], [0.5, 0.6, 0.7]) == 1.0
    assert rank_correlation([0.1, 0.2, 0.3], [0.7, 0.6, 0.5]) == -1.0
    assert rank_correlation([0.1], [0.2]) is None
    assert rank_correlation([0.1, 0.1], [0.2, 0.3]) is None


def test_finalize_of_a_missing_run_is_a_clear_error(tmp_path):
    result = cli_in_process("finalize", tmp_path / "nothing")
    assert result.exit_code == 2 and "no run directory" in result.stderr
