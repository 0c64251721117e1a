"""Early stopping at rungs: ASHA by accuracy, MO-ASHA by non-dominated sorting."""

from __future__ import annotations

import numpy as np
import pytest

from automl.early_stop import EpochReport, RungTable, crowding_distance, pareto_order, rungs


def at(epoch: int, acc: float, lat: float, size: int) -> EpochReport:
    return EpochReport(epoch, acc, lat, size)


def test_rungs_are_powers_of_eta_below_the_last_epoch():
    assert rungs(9, 3) == (1, 3)
    assert rungs(10, 3) == (1, 3, 9)
    assert rungs(2, 3) == (1,)
    assert rungs(8, 2) == (1, 2, 4)
    assert rungs(1, 3) == ()


def test_asha_keeps_the_best_of_each_rung_and_the_top_third_once_there_are_three():
    table = RungTable("asha", max_epochs=9, eta=3)
    assert not table.report(0, at(1, 0.50, 1.0, 100))  # alone: first, continues
    assert table.report(1, at(1, 0.40, 1.0, 100))  # 2 at the rung, keeps 1: not the best
    assert not table.report(2, at(1, 0.60, 1.0, 100))  # the best so far
    assert table.report(3, at(1, 0.55, 1.0, 100))  # 4 at the rung, keeps 1
    assert table.report(4, at(1, 0.52, 1.0, 100))  # 5: keeps 1
    assert not table.report(5, at(1, 0.58, 1.0, 100))  # 6: keeps 2, second best
    assert not table.report(5, at(2, 0.10, 1.0, 100))  # no rung at epoch 2
    assert not table.report(5, at(3, 0.70, 1.0, 100))  # alone at rung 3
    assert set(table.results) == {1, 3} and len(table.results[1]) == 6


def test_mo_asha_keeps_a_small_fast_student_that_asha_stops():
    prior = [
        at(1, 0.90, 2.0, 100),
        at(1, 0.88, 1.9, 95),
        at(1, 0.86, 1.8, 90),
        at(1, 0.70, 2.5, 120),  # dominated by the three above
        at(1, 0.60, 3.0, 130),  # dominated
    ]
    small = at(1, 0.50, 0.2, 10)  # least accurate, fastest, smallest
    decisions = {}
    for mode in ("asha", "mo_asha"):
        table = RungTable(mode, max_epochs=3, eta=3)
        for number, report in enumerate(prior):
            table.report(number, report)
        decisions[mode] = table.report(99, small)  # 6 at the rung: the best 2 continue
    assert decisions == {"asha": True, "mo_asha": False}
    table = RungTable("mo_asha", max_epochs=3, eta=3)
    for number, report in enumerate([*prior, small]):
        table.report(number, report)
    assert table.report(7, at(1, 0.65, 2.8, 125))  # dominated: stops


def test_pareto_order_goes_by_front_then_crowding_then_accuracy():
    points = np.array(
        [
            [0.3, 3.5, 3.5],  # dominated by [0.2, 3, 3]: second front
            [0.1, 5.0, 5.0],  # first front, extreme
            [0.2, 3.0, 3.0],  # first front, crowding 0.4 + 0.55 + 0.55
            [0.4, 1.0, 1.0],  # first front, extreme
            [0.22, 2.8, 2.8],  # first front, crowding 0.67 + 0.5 + 0.5: less crowded
        ]
    )
    crowd = crowding_distance(points[[1, 2, 3, 4]])
    assert np.isinf(crowd[[0, 2]]).all()
    assert crowd[1] == pytest.approx(1.5) and crowd[3] == pytest.approx(2 / 3 + 1)
    # the extremes first (the more accurate of the two first), then the less crowded
    assert pareto_order(points) == [1, 3, 4, 2, 0]


def test_a_trial_reporting_again_at_a_rung_replaces_its_report():
    table = RungTable("asha", max_epochs=3, eta=3)
    table.report(0, at(1, 0.9, 1.0, 10))
    assert table.report(1, at(1, 0.5, 1.0, 10))
    assert not table.report(1, at(1, 0.95, 1.0, 10))  # a retried trial, now the best
    assert len(table.results[1]) == 2


def test_rung_reports_survive_the_study_attribute_round_trip():
    table = RungTable("mo_asha", max_epochs=10, eta=3)
    for epoch, acc in ((1, 0.5), (2, 0.6), (3, 0.7), (9, 0.8)):
        table.report(4, at(epoch, acc, 1.25, 1234))
    attr = table.attr(4)
    assert attr == {"1": [0.5, 1.25, 1234], "3": [0.7, 1.25, 1234], "9": [0.8, 1.25, 1234]}
    again = RungTable("mo_asha", max_epochs=10, eta=3)
    again.load_attr(4, attr)
    assert again.results == table.results
    assert again.attr(5) == {}


@pytest.mark.parametrize("mode", ["asha", "mo_asha"])
def test_the_first_trial_at_every_rung_continues(mode):
    table = RungTable(mode, max_epochs=30, eta=3)
    assert not any(table.report(0, at(e, 0.1, 9.0, 999)) for e in range(1, 30))
