"""`finalize`: retrain the front of a proxy search at full fidelity and rebuild the front.

A proxy search trains each student on a stratified subset for a few epochs
(`training.train_subset`, `training.epochs`), which ranks candidates cheaply but
understates what each can reach. Finalize retrains the models of the proxy front (at most
`training.final_models` of them, spread over the front's MACs: `spread`) from the teacher, on
all training images for `training.final_epochs` (with `training.final_max_epochs`, smaller
models for more: `retraining_epochs`), with the same seed; and, for each of
`training.final_params_limits`, the search's best student under that many parameters, on the
proxy front or not (`best_under`). It
records both figures in pareto.json, rebuilds the front on the full-fidelity figures,
and reports how well the proxy ranked the retrained models: Kendall's tau between
proxy and full validation accuracy (1: the same order, 0: no relation).

Models are retrained cheapest first (MACs times epochs), each written as soon as it is done
(`models/final_N.*`), so an interrupted finalize continues where it stopped. The proxy front
is kept as `proxy_pareto.json`; pareto.json then holds the full-fidelity front.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from automl.config import TrainingConfig
from automl.controllers import study as studies
from automl.errors import UserError
from automl.experiment import Experiment, prepare
from automl.files import write_file
from automl.pareto import rank_correlation
from automl.run.documents import (
    Finalized,
    FrontMember,
    ParetoDocument,
    pareto_document,
    read_document,
    write_document,
)
from automl.run.estimate import duration
from automl.run.finished import SearchRun
from automl.run.layout import trial_key
from automl.run.lock import run_lock
from automl.run.report import build_report, report_title
from automl.student.files import save_student
from automl.trial import Scores, TrialRecord, TrialResult, run_trial
from search_spaces import Architecture

log = logging.getLogger(__name__)

PROXY_PARETO = "proxy_pareto.json"  # the proxy search's front, once pareto.json is finalized


@dataclass(frozen=True)
class Retrained:
    trial: int
    proxy: Scores
    result: TrialResult


def final_name(trial: int) -> str:
    """The retrained weights, relative to the run directory."""
    return f"models/final_{trial_key(trial).removeprefix('trial_')}.safetensors"


def finalize(
    run: SearchRun,
    say: Callable[[str], None] = log.info,
    exp: Experiment | None = None,
    params_limits: Sequence[int] | None = None,
) -> ParetoDocument:
    """Retrain the proxy front at full fidelity, rewrite pareto.json and report.html, and
    return the new document. Retrained models already on disk are reused; `exp` is the
    run's prepared experiment, when the caller has it; `params_limits`, when given, replaces
    the run's `training.final_params_limits`. Holds the run's lock. A run that is no proxy
    search is a UserError."""
    if not run.config.training.is_proxy:
        raise UserError(
            f"{run.run_dir.path} is no proxy search: its students trained on every training image "
            f"for training.epochs ({run.config.training.epochs}), which is what finalize would "
            "repeat. Finalize retrains the front of a search with training.train_subset or "
            "training.final_epochs set"
        )
    limits = run.config.training.final_params_limits if params_limits is None else params_limits
    with run_lock(run.run_dir.path):
        return _finalize(run, say, exp, sorted(set(limits)))


def _finalize(
    run: SearchRun, say: Callable[[str], None], exp: Experiment | None, limits: list[int]
) -> ParetoDocument:
    start = time.perf_counter()
    config, run_dir = run.config, run.run_dir
    t = config.training
    proxy_front = _candidates(run)
    spread_out = spread(proxy_front, t.final_models)
    chosen = best_under(_searched(run), limits) if limits else {}
    taken = {m.trial for m in spread_out}
    extra = {m.trial: m for m in chosen.values() if m.trial not in taken}
    candidates = spread_out + sorted(extra.values(), key=lambda m: m.trial)
    exp = exp or prepare(config)
    proxy_ctx = exp.trial_context()
    proxy_images = len(exp.data.train) if proxy_ctx.subset is None else len(proxy_ctx.subset)
    # the spread's median: members added for a parameter limit are small by nature and would
    # pull it down (and every spread member's epochs with it)
    reference = median_macs([m.macs for m in spread_out])
    epochs = {m.trial: retraining_epochs(m.macs, reference, t) for m in candidates}
    done: list[Retrained] = []
    found_before = {m.trial: _read_retrained(m, epochs[m.trial], run_dir.path) for m in candidates}
    # time left from the compute retrained so far: a model's training costs about its MACs
    # times its epochs
    pending = sum(m.macs * epochs[m.trial] for m in candidates if found_before[m.trial] is None)
    done_compute, retrain_start = 0, time.perf_counter()
    # cheapest first: an interrupted finalize has then retrained as many models as it could
    cheapest_first = sorted(candidates, key=lambda m: (m.macs * epochs[m.trial], m.trial))
    for k, member in enumerate(cheapest_first, 1):
        path = run_dir.path / final_name(member.trial)
        found = found_before[member.trial]
        if found is None:
            left = ""
            if done_compute:
                rate = (time.perf_counter() - retrain_start) / done_compute
                left = f", about {duration(rate * (pending - done_compute))} left"
            say(
                f"finalize {k}/{len(candidates)}: trial {member.trial}, {epochs[member.trial]} "
                f"epochs on {len(exp.data.train)} images{left}"
            )
            training = t.model_copy(update={"epochs": epochs[member.trial], "train_subset": None})
            ctx = dataclasses.replace(proxy_ctx, training=training, subset=None)
            result, model = run_trial(member.architecture, ctx, run.trial_seed(member.trial))
            done_compute += member.macs * epochs[member.trial]
            proxy = Scores(**member.model_dump(include=set(Scores.model_fields)))
            meta = {
                "trial": member.trial,
                "teacher": exp.teacher.card.model,
                "result": result.model_dump(),
                "proxy": proxy.model_dump(),
            }
            save_student(path, model, member.architecture, meta)
            found = Retrained(member.trial, proxy, result)
        done.append(found)
    by_trial = {r.trial: r for r in done}
    done = [by_trial[m.trial] for m in candidates]  # the spread's order, then the limits'
    records = [
        TrialRecord(m.trial, "COMPLETE", m.architecture, by_trial[m.trial].result)
        for m in candidates
    ]
    pareto = pareto_document(records, run.pareto.teacher, final_name)
    for member in pareto.front:
        member.proxy = by_trial[member.trial].proxy
    on_front = {m.trial for m in pareto.front}
    pareto.finalized = Finalized(
        epochs=t.final_epochs or t.epochs,
        train_images=len(exp.data.train),
        proxy_epochs=t.epochs,
        proxy_train_images=proxy_images,
        max_epochs=t.final_max_epochs,
        models=t.final_models,
        trial_epochs={r.trial: r.result.epochs for r in done},
        retrained=[r.trial for r in done],
        not_retrained=[m.trial for m in proxy_front if m.trial not in by_trial],
        best_under={limit: m.trial for limit, m in chosen.items()},
        dropped=[r.trial for r in done if r.trial not in on_front],
        kendall_tau=rank_correlation(
            [r.proxy.val_accuracy for r in done], [r.result.val_accuracy for r in done]
        ),
        seconds=round(time.perf_counter() - start, 2),
    )
    for stale in run_dir.models.glob("final_*.safetensors"):
        if stale.name not in {Path(final_name(r.trial)).name for r in done}:
            stale.unlink()
            stale.with_suffix(".json").unlink(missing_ok=True)
    run_dir.write_pareto(pareto)
    page = build_report(
        pareto, run_dir.read_trial_points(), report_title(config.name), config.latency
    )
    write_file(run_dir.report_html, page)
    return pareto


def retraining_epochs(macs: int, reference_macs: int, training: TrainingConfig) -> int:
    """The epochs finalize retrains a front model of `macs` for: `final_epochs` (or `epochs`);
    with `final_max_epochs`, a model smaller than the reference trains longer, so that its MACs
    times epochs match the reference's at `final_epochs`, never beyond `final_max_epochs`.

    That is training at equal compute, the Scratch-B budget of Liu et al. 2019 ("Rethinking
    the value of network pruning"), where small models trained for the same epochs as large
    ones are undertrained rather than worse. Finalize takes the retrained models' median as
    the reference (`median_macs`): against the largest, every mid-sized model would cost as
    much as the largest, and finalize up to (front size) times the largest's retraining;
    against the median it costs at most about twice the equal-epoch finalize.
    """
    base = training.final_epochs or training.epochs
    if training.final_max_epochs is None:
        return base
    return min(training.final_max_epochs, max(base, round(base * reference_macs / max(macs, 1))))


def median_macs(macs: Sequence[int]) -> int:
    """The median of `macs` (the lower middle one of an even count): the reference model of
    equal-compute retraining."""
    ordered = sorted(macs)
    return ordered[(len(ordered) - 1) // 2]


def spread(front: Sequence[FrontMember], most: int | None) -> list[FrontMember]:
    """At most `most` members of `front`, spread over log MACs, in the front's order.

    The smallest and the largest come first; then, one at a time, the member farthest in log
    MACs from every member chosen so far (the greedy k-centre rule), the better proxy
    validation accuracy on a tie. So members that crowd one size, as a proxy front's
    near-copies do, are retrained once before any size is retrained twice. `most` None (or at
    least the front's size) keeps the whole front.
    """
    if most is None or most >= len(front):
        return list(front)
    logs = {m.trial: math.log(max(m.macs, 1)) for m in front}

    def better(m: FrontMember) -> tuple[float, int]:
        return m.val_accuracy, -m.trial

    smallest = max(front, key=lambda m: (-m.macs, *better(m)))
    largest = max(front, key=lambda m: (m.macs, *better(m)))
    chosen = [smallest] if largest is smallest else [smallest, largest]
    while len(chosen) < most:
        taken = {m.trial for m in chosen}
        chosen.append(
            max(
                (m for m in front if m.trial not in taken),
                key=lambda m: (min(abs(logs[m.trial] - logs[c.trial]) for c in chosen), *better(m)),
            )
        )
    taken = {m.trial for m in chosen}
    return [m for m in front if m.trial in taken]


def best_under(members: Sequence[FrontMember], limits: Sequence[int]) -> dict[int, FrontMember]:
    """For each limit, the member of at most that many parameters with the best proxy
    validation accuracy (on a tie the fewer parameters, then the earlier trial); a limit no
    member meets is left out.

    The front is drawn over accuracy, latency and packed size, not parameters: a student of
    98k parameters at fp32 can be dominated by one of 300k at 4 bits, smaller on disk and as
    fast, and so be missing from a front a user asks "the best under 100k parameters" of."""
    chosen = {}
    for limit in limits:
        fits = [m for m in members if m.params <= limit]
        if fits:
            chosen[limit] = max(fits, key=lambda m: (m.val_accuracy, -m.params, -m.trial))
    return chosen


def _searched(run: SearchRun) -> list[FrontMember]:
    """Every trained student of the run's search within its limits, as front members (whose
    weights, off the front, are no longer kept; finalize trains from the teacher anyway)."""
    study = studies.open_study(run.run_dir.study(run.config.name))
    return [
        FrontMember(
            trial=r.number,
            architecture=r.architecture,
            **r.result.model_dump(exclude={"epochs"}),
            weights=run.run_dir.weights_name(r.number),
        )
        for r in studies.records(study)
        if r.trained and not r.rejected and r.result is not None and r.architecture is not None
    ]


def _candidates(run: SearchRun) -> list[FrontMember]:
    """The proxy front. The first finalize keeps the proxy search's pareto.json as
    proxy_pareto.json, since pareto.json then holds the full-fidelity front; a resumed search
    writes a proxy pareto.json again, which the next finalize takes."""
    kept = run.run_dir.path / PROXY_PARETO
    if run.pareto.finalized is None:
        write_document(kept, run.pareto)
        return list(run.pareto.front)
    return list(read_document(kept, ParetoDocument).front)


def _read_retrained(member: FrontMember, epochs: int, run_dir: Path) -> Retrained | None:
    """A model retrained by an earlier, interrupted finalize, if its files are complete and it
    trained for `epochs` (a resumed search may bring a larger front, hence other epochs)."""
    path = run_dir / final_name(member.trial)
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return None
    try:
        doc = json.loads(meta.read_text())
        # compared as models: a field added since with its default (weight_quant's
        # `quantizer`) leaves the architecture what it was
        if Architecture.model_validate(doc["architecture"]) != member.architecture:
            return None
        result = TrialResult(**doc["result"])
        if result.epochs != epochs:
            return None
        return Retrained(member.trial, Scores(**doc["proxy"]), result)
    except (ValueError, KeyError, TypeError):
        return None
