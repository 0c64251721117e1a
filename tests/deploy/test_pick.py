"""Choosing a model under constraints: pure logic over pareto.json entries."""

from __future__ import annotations

from automl.deploy.pick import Constraints, choose, figures_of
from automl.run.documents import Deployed, DeployFailed, FrontMember
from tests.conftest import make_arch


def member(trial, acc, ort_ms, onnx_bytes):
    return FrontMember(
        trial=trial,
        architecture=make_arch([1], [1], [8]),
        val_accuracy=acc,
        test_accuracy=acc,
        latency_ms=10 * ort_ms,  # the search's PyTorch figure: not what pick constrains
        size_bytes=onnx_bytes // 4,  # packed: not what pick constrains
        params=1,
        macs=1,
        train_seconds=1.0,
        weights="w",
        measured_latency_ms={"torch": {"batch_1": 10 * ort_ms}, "onnxruntime": {"batch_1": ort_ms}},
        deployed=Deployed(
            path="m.onnx",
            format="int8",
            onnx_bytes=onnx_bytes,
            torch_test_accuracy=acc,
            onnx_test_accuracy=acc,
            reduce_range=False,
            fp32_onnx_bytes=4 * onnx_bytes,
        ),
    )


FRONT = [
    member(1, 0.99, 2.0, 900_000),
    member(2, 0.97, 1.0, 400_000),
    member(3, 0.97, 0.8, 300_000),
    member(4, 0.95, 0.5, 200_000),
]


def test_figures_are_the_deployed_ones_until_report_has_run():
    f = figures_of(FRONT[0])
    assert (f.latency_ms, f.size_bytes) == (2.0, 900_000)
    unmeasured = FRONT[0].model_copy(update={"measured_latency_ms": None, "deployed": None})
    f = figures_of(unmeasured)
    assert (f.latency_ms, f.size_bytes) == (20.0, 225_000)  # the search's own figures


def test_most_accurate_within_limits():
    assert choose(FRONT, Constraints()).picked.trial == 1
    assert choose(FRONT, Constraints(max_latency_ms=1.5)).picked.trial == 3
    assert choose(FRONT, Constraints(max_size_kb=250)).picked.trial == 4
    assert choose(FRONT, Constraints(min_accuracy=0.98, max_size_kb=900)).picked.trial == 1
    # Limits are inclusive.
    assert choose(FRONT, Constraints(max_latency_ms=0.5)).picked.trial == 4


def test_ties_go_to_the_smaller_model():
    # Trials 2 and 3 are equally accurate; 3 is smaller.
    assert choose(FRONT, Constraints(max_latency_ms=1.0)).picked.trial == 3
    same_size = [member(7, 0.97, 1.0, 300_000), member(6, 0.97, 0.9, 300_000)]
    assert choose(same_size, Constraints()).picked.trial == 6  # then the faster


def test_nothing_fits_names_the_closest():
    choice = choose(FRONT, Constraints(max_latency_ms=0.4, min_accuracy=0.99), n_closest=2)
    assert choice.picked is None
    assert len(choice.closest) == 2
    nearest, misses = choice.closest[0]
    assert nearest.trial == 4  # 25% too slow, 4% short on accuracy: the smallest total miss
    assert misses["latency"] > 0 and misses["accuracy"] > 0
    totals = [sum(m.values()) for _, m in choice.closest]
    assert totals == sorted(totals)


def test_models_that_failed_their_export_check_are_never_picked():
    broken = member(9, 0.999, 0.1, 100_000)
    broken.deployed = DeployFailed(error="scores 0.90 in ONNX Runtime against 0.99")
    assert choose([*FRONT, broken], Constraints()).picked.trial == 1
