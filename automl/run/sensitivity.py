"""Sensitivity scan (the pruning guides' "sensitivity analysis"; Li et al. 2017, "Pruning Filters
for Efficient ConvNets", section 3.2): prune one stage of the teacher at a time, at several
fractions of channels kept, and drop each droppable block alone; record how much validation
accuracy each change costs.

Without training (`epochs: 0`, the default) the scan shows how fragile each stage is as cut,
which is what Li et al. plot; with `epochs` it distils each pruned teacher for that many
epochs with the search's training recipe first (at T = 4, alpha = 0.9), closer to what a
student will reach and as many times dearer. Each change is measured alone: two stages pruned
together may cost more than the sum of their drops.

A scan belongs to one teacher (its cache fingerprint), criterion, list of fractions and, when
it trains, training recipe; it is cached in the teacher's cache folder, next to a plot
(`sensitivity-<key>.json` and `.html`), so a search that narrows its space with it
(`search_space.sensitivity_max_drop`) reuses it, and resumes narrow the space the same way.

`narrow` raises each stage's lowest `channel_keep` to the smallest fraction from which every
larger scanned fraction costs at most `max_drop` (0.01: one point of accuracy; when every
scanned fraction does, the scan sets no limit), and each
stage's lowest `blocks` so that only blocks whose drop alone costs at most `max_drop` can go.
Depth drops a stage's last blocks first, so those are counted from the end.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel
from torch import nn

from automl.compress._criteria import known_criterion
from automl.compress.channels import ChannelsParams
from automl.errors import UserError
from automl.experiment import Experiment
from automl.files import write_file
from automl.stages import Stage, drop_blocks
from automl.training import accuracy, fit
from automl.trial import TrialContext
from search_spaces import Architecture
from search_spaces.dimensions import ChoiceDim, FloatDim, IntDim
from search_spaces.space import BoundSearchSpace

log = logging.getLogger(__name__)

KEEPS = (0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125)
KD_TEMPERATURE, KD_ALPHA = 4.0, 0.9  # the controlled benchmarks' distillation
FORMAT = 1


class ChannelPoint(BaseModel):
    stage: int
    name: str
    keep: float
    val_accuracy: float
    drop: float  # the teacher's validation accuracy minus this one (0.01: one point)


class BlockPoint(BaseModel):
    stage: int
    name: str
    block: str  # module path of the block dropped, e.g. layer3.1
    position: int  # its index in the stage, from 0
    val_accuracy: float
    drop: float


class SensitivityScan(BaseModel):
    format: int = FORMAT
    teacher: str
    teacher_fingerprint: str
    teacher_val_accuracy: float  # measured by the scan, as each point is
    criterion: str
    epochs: int
    keeps: list[float]
    channels: list[ChannelPoint]
    blocks: list[BlockPoint]
    seconds: float


def scan_key(exp: Experiment, criterion: str, epochs: int, keeps: Sequence[float]) -> str:
    """What a scan's figures depend on beyond the teacher, hashed: criterion, fractions, and
    the training recipe when it trains."""
    recipe = exp.config.training.model_dump(mode="json") if epochs else None
    raw = json.dumps(
        {"criterion": criterion, "epochs": epochs, "keeps": list(keeps), "recipe": recipe},
        sort_keys=True,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def scan_path(exp: Experiment, criterion: str, epochs: int, keeps: Sequence[float]) -> Path:
    """Where the scan of these settings is cached (`.json`; the plot beside it, `.html`)."""
    key = scan_key(exp, criterion, epochs, keeps)
    return exp.teacher.cache_dir / f"sensitivity-{criterion}-{epochs}ep-{key}.json"


def sensitivity(
    exp: Experiment,
    criterion: str = "l2",
    epochs: int = 0,
    keeps: Sequence[float] = KEEPS,
    rescan: bool = False,
) -> tuple[SensitivityScan, Path]:
    """The cached scan of these settings, or a new one (saved and plotted); its path."""
    keeps = _checked_keeps(keeps)
    check_criterion(criterion)
    path = scan_path(exp, criterion, epochs, keeps)
    if path.is_file() and not rescan:
        try:
            found = SensitivityScan.model_validate_json(path.read_text())
        except ValueError:
            log.warning("sensitivity: %s is unreadable; scanning again", path)
        else:
            if found.teacher_fingerprint == exp.teacher.card.fingerprint:
                return found, path
    result = run_scan(exp, criterion, epochs, keeps)
    write_file(path, result.model_dump_json(indent=2) + "\n")
    plot(result, path.with_suffix(".html"))
    return result, path


def run_scan(
    exp: Experiment, criterion: str, epochs: int, keeps: Sequence[float]
) -> SensitivityScan:
    """Prune each stage alone at each of `keeps` (the others whole) and drop each droppable
    block alone; score each on the validation split, after `epochs` of distillation."""
    start = time.perf_counter()
    ctx = exp.trial_context()
    if epochs:
        ctx = replace(ctx, training=ctx.training.model_copy(update={"epochs": epochs}))
    stages = exp.stages
    reference = accuracy(copy.deepcopy(ctx.teacher), ctx.data.val, ctx.device)
    channels: list[ChannelPoint] = []
    for stage in stages:
        for keep in keeps:
            fractions = [keep if s.index == stage.index else 1.0 for s in stages]
            arch = Architecture.compose(
                {"channels": ChannelsParams(channel_keep=fractions, criterion=criterion)},
                kd_temperature=KD_TEMPERATURE,
                kd_alpha=KD_ALPHA,
            )
            acc = _score(ctx.build(arch).model, ctx, epochs, exp.config.seed)
            channels.append(ChannelPoint(**_where(stage), keep=keep, **_figures(acc, reference)))
            log.info("sensitivity: %s at %.3g of its channels: val %.4f", stage.name, keep, acc)
    blocks: list[BlockPoint] = []
    for stage in stages:
        for position, block in enumerate(stage.blocks):
            if not block.removable:
                continue
            model = copy.deepcopy(ctx.teacher).cpu().eval()
            drop_blocks(model, [block])
            acc = _score(model, ctx, epochs, exp.config.seed)
            path = f"{block.seq_path}.{block.index}"
            blocks.append(
                BlockPoint(
                    **_where(stage),
                    block=path,
                    position=position,
                    **_figures(acc, reference),
                )
            )
            log.info("sensitivity: %s without block %s: val %.4f", stage.name, path, acc)
    return SensitivityScan(
        teacher=exp.teacher.card.model,
        teacher_fingerprint=exp.teacher.card.fingerprint,
        teacher_val_accuracy=reference,
        criterion=criterion,
        epochs=epochs,
        keeps=list(keeps),
        channels=channels,
        blocks=blocks,
        seconds=round(time.perf_counter() - start, 1),
    )


def narrow(space: BoundSearchSpace, scan: SensitivityScan, max_drop: float) -> list[str]:
    """Raise the lower end of each stage's `channel_keep` and `blocks` dimensions in `space`
    (in place) to what `scan` allows at `max_drop` (module docstring); returns one line per
    dimension changed. Stages that share `channel_keep` (`shared_stages`) take the highest
    of their lower ends. A dimension whose every scanned value costs more keeps only its
    highest value."""
    changed: list[str] = []
    lows = [
        _passing_keep([(p.keep, p.drop) for p in scan.channels if p.stage == i], max_drop)
        for i in range(len(space.stages))
    ]
    if space.config.shared_stages:
        lows = [max(lows)] * len(lows)
    for stage, dims, low in zip(space.stages, space.stage_dims, lows, strict=True):
        for field, new in (
            ("channel_keep", _raise_keep(dims.get("channel_keep"), low)),
            ("blocks", _raise_blocks(dims.get("blocks"), stage, scan, max_drop)),
        ):
            if new is not None and new != dims[field]:
                changed.append(
                    f"{stage.name}.{field}: {dims[field].describe()} -> {new.describe()}"
                )
                dims[field] = new
    return changed


def plot(scan: SensitivityScan, path: Path) -> Path:
    """A self-contained plotly page: validation accuracy against the fraction of channels kept,
    a line per stage, and the accuracy without each droppable block."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.7, 0.3],
        subplot_titles=("one stage pruned, the others whole", "one block dropped"),
    )
    for name in dict.fromkeys(p.name for p in scan.channels):
        points = sorted((p for p in scan.channels if p.name == name), key=lambda p: p.keep)
        fig.add_trace(
            go.Scatter(
                x=[p.keep for p in points] + [1.0],
                y=[p.val_accuracy for p in points] + [scan.teacher_val_accuracy],
                mode="lines+markers",
                name=name,
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Bar(
            x=[p.block for p in scan.blocks],
            y=[p.val_accuracy for p in scan.blocks],
            name="without the block",
        ),
        row=1,
        col=2,
    )
    fig.add_hline(y=scan.teacher_val_accuracy, line_dash="dot", annotation_text="teacher")
    fig.update_xaxes(title_text="fraction of the stage's channels kept", row=1, col=1)
    fig.update_yaxes(title_text="validation accuracy", row=1, col=1)
    trained = f"{scan.epochs} epochs of distillation" if scan.epochs else "no training"
    fig.update_layout(
        title=f"Sensitivity of {scan.teacher} ({scan.criterion} criterion, {trained})",
        template="plotly_white",
        height=480,
    )
    write_file(path, fig.to_html(full_html=True, include_plotlyjs=True))
    return path


def _score(model: nn.Module, ctx: TrialContext, epochs: int, seed: int) -> float:
    if epochs:
        loss = ctx.distillation(KD_TEMPERATURE, KD_ALPHA)
        fit(
            model,
            ctx.data.train,
            loss,
            ctx.fit_settings(epochs),
            ctx.device,
            seed,
            augment=ctx.augmenter(),
            indices=ctx.subset,
        )
    return accuracy(model, ctx.data.val, ctx.device)  # in eval mode, without gradients


def _where(stage: Stage) -> dict[str, object]:
    return {"stage": stage.index, "name": stage.name}


def _figures(acc: float, reference: float) -> dict[str, float]:
    return {"val_accuracy": acc, "drop": round(reference - acc, 6)}


def _passing_keep(points: list[tuple[float, float]], max_drop: float) -> float:
    """The smallest fraction from which every larger scanned fraction drops at most
    `max_drop`; 1.0 when the largest already drops more, 0.0 (no limit) when none does: the
    scan says nothing of fractions below its smallest."""
    low = 1.0
    for keep, drop in sorted(points, reverse=True):
        if drop > max_drop:
            return low
        low = keep
    return 0.0


def _raise_keep(dim: object, low: float) -> object | None:
    if isinstance(dim, FloatDim):
        if low <= dim.low:
            return dim
        if dim.step is None:
            return dim.model_copy(update={"low": min(low, dim.high)})
        grid = [v for v in dim.probe() if v >= low - 1e-9] or [dim.ends()[1]]
        return FloatDim(low=grid[0], high=dim.high, step=dim.step)
    if isinstance(dim, ChoiceDim):
        kept = [v for v in dim.values if v >= low - 1e-9] or [max(dim.values)]
        return dim if kept == list(dim.values) else ChoiceDim(values=kept)
    return None  # fixed, or not searched


def _raise_blocks(
    dim: object, stage: Stage, scan: SensitivityScan, max_drop: float
) -> IntDim | None:
    if not isinstance(dim, IntDim) or dim.low is None or dim.high is None:
        return None
    drops = {p.position: p.drop for p in scan.blocks if p.stage == stage.index}
    droppable = 0
    for position in reversed(range(stage.num_blocks)):  # depth drops the last blocks first
        if not stage.blocks[position].removable or drops.get(position, 1.0) > max_drop:
            break
        droppable += 1
    low = min(max(dim.low, stage.num_blocks - droppable), dim.high)
    return dim if low == dim.low else IntDim(low=low, high=dim.high, step=dim.step)


def _checked_keeps(keeps: Sequence[float]) -> list[float]:
    bad = [k for k in keeps if not 0 < k < 1]
    if not keeps or bad:
        raise UserError(
            f"sensitivity: fractions of channels kept must lie strictly between 0 and 1, got "
            f"{list(keeps)}"
        )
    return sorted(set(keeps), reverse=True)


def check_criterion(criterion: str) -> None:
    try:
        known_criterion(criterion)
    except ValueError as exc:
        raise UserError(f"sensitivity: --criterion: {exc}") from None
