"""The study helpers both controllers share: interrupted trials, records (of this version and
of runs written before techniques were plugins), the failed-trial policy."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from automl.controllers import CONTROLLERS, list_controllers
from automl.controllers.study import (
    INTERRUPTED,
    FailureBudget,
    SearchFailed,
    StudyRef,
    enqueue,
    fail_interrupted,
    failed,
    open_study,
    records,
    resumed_seed,
    study_problem,
)
from tests.conftest import ROOT, make_arch


def test_interrupted_trials_fail_with_their_reason_and_records_read_both_formats(tmp_path):
    ref = StudyRef(tmp_path / "study.db", "s", tmp_path)
    study = open_study(ref)
    arch = make_arch([1, 0.5], [1, 2], [8, 4])
    done = study.ask()
    done.set_user_attr("architecture", arch.model_dump(mode="json"))
    done.set_user_attr(
        "result",
        {
            "val_accuracy": 0.9,
            "test_accuracy": 0.8,
            "latency_ms": 1.0,
            "size_bytes": 10,
            "params": 5,
            "macs": 7,
            "train_seconds": 1.0,
            "epochs": 1,
        },
    )
    study.tell(done, [0.9, 1.0, 10])
    legacy = study.ask()  # a trial of a run written before plugins: flat architecture
    legacy.set_user_attr("architecture", arch.flat())
    study.ask()  # left running by a killed process
    fail_interrupted(open_study(ref))
    assert failed(open_study(ref)) == 0  # interrupted ones do not count as failures
    found = records(open_study(ref))
    assert [r.state for r in found] == ["COMPLETE", "FAIL", "FAIL"]  # both left running
    assert found[0].architecture == arch and found[0].result.val_accuracy == 0.9
    assert found[1].architecture == arch  # from the flat form
    assert found[1].error == found[2].error == INTERRUPTED and found[2].architecture is None
    assert resumed_seed(study, 5) == 8


def test_failures_are_counted_until_the_limit_is_passed():
    budget = FailureBudget(limit=2, failed=1)
    budget.record("RuntimeError: one")
    assert not budget.exhausted
    with pytest.raises(SearchFailed, match=r"3 trials failed .* last: RuntimeError: two"):
        budget.record("RuntimeError: two")


def test_every_registered_controller_runs_the_controller_contract():
    """Each controller's test module runs every test of the contract, or names the test file
    that covers a clause more closely (COVERED_ELSEWHERE)."""
    import importlib

    from tests.controllers import contract

    for name in list_controllers():
        stem = f"test_{CONTROLLERS[name][0].rsplit('.', 1)[1]}"
        path = ROOT / "tests" / "controllers" / f"{stem}.py"
        assert path.is_file(), f"no contract test module for controller {name!r}: {path}"
        module = importlib.import_module(f"tests.controllers.{stem}")
        elsewhere = getattr(module, "COVERED_ELSEWHERE", {})
        for test in contract.__all__:
            if test in elsewhere:
                assert (ROOT / elsewhere[test]).is_file(), elsewhere[test]
            else:
                assert getattr(module, test, None) is getattr(contract, test), (name, test)


def test_study_directions_follow_the_objectives(tmp_path):
    from automl.objectives import OBJECTIVES

    study = open_study(StudyRef(tmp_path / "db.db", "s", tmp_path))
    assert [d.name.lower() for d in study.directions] == [o.direction for o in OBJECTIVES]


def test_enqueue_queues_each_set_once_and_again_after_an_interruption(tmp_path):
    ref = StudyRef(tmp_path / "study.db", "s", tmp_path)
    small, big = {"stage0.blocks": 1}, {"stage0.blocks": 2}
    assert enqueue(open_study(ref), [small, big]) == 2
    assert enqueue(open_study(ref), [small, big]) == 0  # waiting already
    study = open_study(ref)
    assert study.ask().suggest_int("stage0.blocks", 1, 2) == 1  # queued trials come first
    # that trial was left running by a killed process: the next start queues it again
    assert enqueue(open_study(ref), [small, big]) == 1
    study = open_study(ref)
    assert [study.ask().suggest_int("stage0.blocks", 1, 2) for _ in range(2)] == [2, 1]
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "RUNNING", "RUNNING"]


def test_a_study_that_cannot_be_resumed_is_named_with_the_reason(tmp_path):
    ref = StudyRef(tmp_path / "study.db", "s", tmp_path)
    assert study_problem(ref) == f"{ref.db_path} is missing"
    study = open_study(ref)
    trial = study.ask()
    trial.set_user_attr("error", "RuntimeError: boom")
    study.tell(trial, state=TrialState.FAIL)
    assert failed(study) == 1 and study_problem(ref) is None
    assert "holds no study named 'other'" in study_problem(StudyRef(ref.db_path, "other", tmp_path))
    data = ref.db_path.read_bytes()
    ref.db_path.write_bytes(b"not a database" * 100)
    assert "cannot be read as an Optuna study" in study_problem(ref)
    ref.db_path.write_bytes(data[: len(data) // 2])  # truncated
    assert study_problem(ref) is not None
