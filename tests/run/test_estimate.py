"""The estimate printed before a search: the space's corners, trained for a few real steps."""

from __future__ import annotations

from automl.run.estimate import Estimate, corner, estimate, step_seconds


def test_the_corners_are_the_smallest_and_the_largest_student(tiny):
    space = tiny.config.search_space.bind(tiny.stages)
    small, large = corner(space, high=False), corner(space, high=True)
    assert [s["blocks"] for s in small.stages] == [1, 1, 1, 1]
    assert [s["blocks"] for s in large.stages] == [2, 2, 2, 2]  # resnet18: two blocks a stage
    assert {s["channel_keep"] for s in small.stages} == {0.25}
    assert {s["channel_keep"] for s in large.stages} == {1.0}
    assert {s["bits"] for s in small.stages} == {4} and {s["bits"] for s in large.stages} == {32}


def test_the_estimate_scales_measured_steps_to_the_trials_left(tiny, monkeypatch):
    space, ctx = tiny.config.search_space.bind(tiny.stages), tiny.trial_context()
    assert step_seconds(corner(space, high=False), ctx, steps=1) > 0  # one real step
    timed = {False: 0.5, True: 2.0}  # seconds per step of each corner, by its high flag
    monkeypatch.setattr(
        "automl.run.estimate.step_seconds",
        lambda arch, ctx: timed[arch == corner(space, high=True)],
    )
    found = estimate(space, ctx, trials=5)
    steps = -(-len(tiny.data.train) // ctx.training.batch_size) * ctx.training.epochs
    assert found == Estimate(0.5 * steps, 2.0 * steps, 5)


def test_the_estimate_reads_as_a_range_per_trial_and_in_all():
    line = Estimate(smallest_s=30.0, largest_s=200.0, trials=60).describe()
    assert line.startswith("60 trials to run; training alone takes 30 s (the space's smallest")
    assert "to 3 min (its largest) per trial" in line
    assert "about 30 min to 3.3 h in all, plus evaluation" in line
    assert "about 15 min to 1.7 h in all with 2 at once" in Estimate(30.0, 200.0, 60).describe(2)
    assert "in all" not in Estimate(30.0, 200.0, 60).describe(None)  # Ray: trials at once unknown
