"""Command line: thin commands that load a config and call `automl`."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from automl.controllers import list_controllers
from automl.controllers.samplers import list_samplers
from automl.paths import given_path
from automl.progress import show_progress

if TYPE_CHECKING:
    from automl.run.documents import ParetoDocument

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "digits.yaml"

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # click's plain help: flags as flags, defaults in brackets
    help="Find compact students of a timm teacher: prune, quantize, distil. Without --config "
    f"a command takes configs/{DEFAULT_CONFIG.name}; an option left out takes its config's value.",
)


@functools.cache
def _default_config() -> Any:
    import yaml

    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def _default(dotted: str) -> Any:
    """`dotted`'s value in the default config, for --help (None when it is not set there)."""
    node: Any = _default_config()
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _of_config(help_text: str, dotted: str) -> str:
    """Help for an option that overrides `dotted`: what it is, then where its default comes
    from and what that is in the default config."""
    value = _default(dotted)
    shown = "null" if value is None else value
    return f"{help_text} [default: the config's {dotted}; {shown} in {DEFAULT_CONFIG.name}]"


def _path_option(help_text: str, *names: str) -> Any:
    """A path option: an empty path is refused (`given_path`), and help shows `<path>`."""
    return typer.Option(*names, parser=given_path, metavar="<path>", help=help_text)


stderr = Console(stderr=True, soft_wrap=True)
stdout = Console(soft_wrap=True)

ConfigOpt = Annotated[
    Path | None,
    _path_option(
        f"YAML experiment config [default: configs/{DEFAULT_CONFIG.name}]", "--config", "-c"
    ),
]
RunArg = Annotated[
    Path,
    typer.Argument(
        parser=given_path, metavar="RUN", help="run directory of a search, e.g. runs/digits"
    ),
]


def _fail(message: str) -> None:
    # the message is plain text: brackets in it (pip's extras, lists of allowed values) are not
    # rich's markup
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    raise typer.Exit(2)


def _load(config: Path | None, overrides: dict[str, Any]):
    from automl.config import load_config

    return load_config(config, overrides)


@app.command()
def search(
    config: ConfigOpt = None,
    budget: Annotated[
        int | None, typer.Option(help=_of_config("trials to train", "search.budget"))
    ] = None,
    time_budget: Annotated[
        str | None,
        typer.Option(
            help=_of_config(
                "time the search may take, finalize included (90s, 30m, 2h); with --budget, "
                "whichever comes first",
                "search.time_budget",
            )
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help=_of_config("distillation epochs per trial", "training.epochs")),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help=_of_config("of the search: trial i is seeded seed + i (not the teacher)", "seed")
        ),
    ] = None,
    sampler: Annotated[
        str | None, typer.Option(help=_of_config(" | ".join(list_samplers()), "search.sampler"))
    ] = None,
    out: Annotated[
        Path | None,
        _path_option("run directory [default: the config's out; runs/<name> when it is null]"),
    ] = None,
    name: Annotated[str | None, typer.Option(help=_of_config("run and study name", "name"))] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="continue the run in the run directory, with its stored config"
        ),
    ] = False,
    backend: Annotated[
        str | None,
        typer.Option(
            help=_of_config(
                f"{' | '.join(list_controllers())} (optuna: this machine)", "search.backend"
            )
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help=_of_config("Ray cluster HOST:PORT; null starts a local instance", "ray.address")
        ),
    ] = None,
    max_concurrent: Annotated[
        int | None,
        typer.Option(
            help=_of_config("Ray: trials at once (null: as many as fit)", "ray.max_concurrent")
        ),
    ] = None,
    cpus_per_trial: Annotated[
        float | None, typer.Option(help=_of_config("Ray: CPUs per trial", "ray.cpus_per_trial"))
    ] = None,
    gpus_per_trial: Annotated[
        float | None, typer.Option(help=_of_config("Ray: GPUs per trial", "ray.gpus_per_trial"))
    ] = None,
    early_stop: Annotated[
        str | None,
        typer.Option(
            help=_of_config(
                "none | asha | mo_asha: stop students that rank low after epoch 1, 3, 9, ...",
                "search.early_stop",
            )
        ),
    ] = None,
) -> None:
    """Search for students and write the run directory (study, trials, Pareto front, report)."""
    import automl
    from automl.errors import UserError

    flags = {
        "budget": budget,
        "time_budget": time_budget,
        "epochs": epochs,
        "seed": seed,
        "sampler": sampler,
        "out": out,
        "name": name,
        "backend": backend,
        "address": address,
        "max_concurrent": max_concurrent,
        "cpus_per_trial": cpus_per_trial,
        "gpus_per_trial": gpus_per_trial,
        "early_stop": early_stop,
    }
    cfg = None
    try:
        # a new run's config; with --resume, what the command asks for
        cfg = automl.experiment_config(config, overrides=flags, as_flags=True)
        if resume:
            requested = cfg if config is not None else None
            run = automl.resume(cfg.run_dir, requested=requested, **flags)
        else:
            run = automl.search(cfg)
    except UserError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        if cfg is not None and (cfg.run_dir / "run.json").is_file():
            stderr.print("interrupted; finished trials are kept. Continue with --resume.")
        else:  # stopped before the run began: nothing to resume
            stderr.print(
                "interrupted before the first trial; run the same command again (a teacher "
                "that finished training comes from its cache)"
            )
        raise typer.Exit(130) from None
    summary = run.summary
    assert summary is not None
    stdout.print(
        f"done: {summary.completed} trials, front of {summary.front_size}, hypervolume "
        f"{summary.hypervolume:.4f}, {summary.wall_seconds:.0f} s "
        f"(controller overhead {100 * summary.controller_overhead_fraction:.1f}%)\n"
        f"run directory: {summary.run_dir}  (report.html, pareto.json, trials.csv, models/)",
        highlight=False,
    )
    if summary.time_stop:
        stdout.print(summary.time_stop, highlight=False)
    if summary.finalized is not None:
        _print_finalized(summary.finalized)
    hint = summary.gap_hint()
    if hint is not None:
        stdout.print(hint, highlight=False)


def _print_finalized(done: Any) -> None:
    tau = "undefined" if done.kendall_tau is None else f"{done.kendall_tau:.2f}"
    skipped = ""
    if done.not_retrained:
        skipped = f", {len(done.not_retrained)} more left out (training.final_models)"
    stdout.print(
        f"finalized: {len(done.retrained)} front models retrained for {done.epochs_said()} "
        f"epochs on {done.train_images} images (proxy: {done.proxy_epochs} epochs on "
        f"{done.proxy_train_images}){skipped}; {len(done.dropped)} left the front; Kendall tau "
        f"of proxy and full validation accuracy {tau}",
        highlight=False,
    )
    for limit, trial in done.best_under.items():
        stdout.print(f"best under {limit:,} parameters: trial {trial}, retrained", highlight=False)


@app.command()
def finalize(
    run_path: RunArg,
    params_limit: Annotated[
        list[int] | None,
        typer.Option(
            min=1,
            help="also retrain the search's best student of at most this many parameters "
            "(repeatable) [default: the run's training.final_params_limits]",
        ),
    ] = None,
) -> None:
    """Retrain the front of a proxy search on every training image for training.final_epochs,
    rebuild the front on those figures and report the proxy's rank correlation (resumable)."""
    import automl
    from automl.errors import UserError

    try:
        run = automl.finalize(run_path, params_limit, _say)
    except UserError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        stderr.print("interrupted; retrained models are kept. Run finalize again to go on.")
        raise typer.Exit(130) from None
    if run.finalized is not None:
        _print_finalized(run.finalized)


@app.command()
def teacher(
    config: ConfigOpt = None,
    seed: Annotated[
        int | None,
        typer.Option(help=_of_config("of the teacher's training", "teacher.seed")),
    ] = None,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="train even if a teacher of this recipe is cached")
    ] = False,
) -> None:
    """Train the config's teacher (or load it from the cache) and show its card."""
    from automl.errors import UserError
    from automl.experiment import prepare

    try:
        t = prepare(_load(config, {"teacher.seed": seed}), retrain=retrain).teacher
    except UserError as exc:
        _fail(str(exc))
    stdout.print_json(t.card.model_dump_json())
    stdout.print(f"cached in {t.cache_dir}", highlight=False)


@app.command()
def sensitivity(
    config: ConfigOpt = None,
    criterion: Annotated[
        str | None,
        typer.Option(
            help="channel criterion [default: the config's search_space.sensitivity_criterion, "
            "l2 unless set]"
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=100,
            help="distillation epochs per change, 0 to score each as cut [default: the "
            "config's search_space.sensitivity_epochs, 0 unless set]",
        ),
    ] = None,
    keep: Annotated[
        list[float] | None,
        typer.Option(
            help="a fraction of channels to keep, once per fraction [default: 0.875 0.75 ... 0.125]"
        ),
    ] = None,
    rescan: Annotated[
        bool, typer.Option("--rescan", help="scan again even if this scan is cached")
    ] = False,
) -> None:
    """Prune each stage of the teacher alone at several fractions of its channels and drop each
    droppable block alone; show the validation accuracy each change costs, and save the scan
    and its plot in the teacher's cache (search_space.sensitivity_max_drop narrows a search
    with it)."""
    from automl.errors import UserError
    from automl.experiment import prepare
    from automl.run.sensitivity import KEEPS, check_criterion
    from automl.run.sensitivity import sensitivity as scan_sensitivity

    try:
        cfg = _load(config, {})
        space = cfg.search_space
        criterion = space.sensitivity_criterion if criterion is None else criterion
        check_criterion(criterion)  # before the teacher trains
        scan, path = scan_sensitivity(
            prepare(cfg),
            criterion,
            space.sensitivity_epochs if epochs is None else epochs,
            keep or KEEPS,
            rescan,
        )
    except UserError as exc:
        _fail(str(exc))
    _print_sensitivity(scan)
    stdout.print(f"saved {path} and its plot {path.with_suffix('.html')}", highlight=False)


def _print_sensitivity(scan: Any) -> None:
    from rich.table import Table

    trained = f"after {scan.epochs} epochs of distillation" if scan.epochs else "as cut"
    table = Table(
        title=f"validation accuracy lost (points), one change at a time, {trained}; "
        f"teacher {scan.teacher_val_accuracy:.4f}",
        title_justify="left",
    )
    table.add_column("stage")
    for k in scan.keeps:
        table.add_column(f"keep {k:g}", justify="right")
    for name in dict.fromkeys(p.name for p in scan.channels):
        drops = {p.keep: p.drop for p in scan.channels if p.name == name}
        table.add_row(name, *(f"{100 * drops[k]:.2f}" for k in scan.keeps))
    stdout.print(table)
    blocks = ", ".join(f"{p.block} {100 * p.drop:.2f}" for p in scan.blocks) or "none droppable"
    stdout.print(f"each droppable block dropped alone: {blocks}", highlight=False)


BatchOpt = Annotated[
    int, typer.Option("--batch", min=1, max=1024, help="the larger batch size measured")
]
RoundsOpt = Annotated[int, typer.Option("--rounds", min=1, help="interleaved timing rounds")]


def _say(message: str) -> None:
    stderr.print(message, highlight=False, markup=False)


@app.command()
def report(run_path: RunArg, batch: BatchOpt = 32, rounds: RoundsOpt = 7) -> None:
    """Re-measure the front and the teacher together (PyTorch and ONNX Runtime, batch 1 and
    --batch), then rewrite pareto.json and report.html."""
    import automl
    from automl.errors import UserError

    try:
        run = automl.open_run(run_path).report(automl.MeasureOptions(batch, rounds), _say)
    except UserError as exc:
        _fail(str(exc))
    pareto = run.pareto
    _print_front(pareto)
    tau = pareto.measurement.search_rank_tau if pareto.measurement else None
    if tau is not None:
        stdout.print(
            f"the front's re-measured latencies rank as the search's did: Kendall tau {tau:.2f} "
            f"({run.config.latency.runtime}, the runtime the search timed; 1: the same order)",
            highlight=False,
        )
    stdout.print(f"rewrote {run.path / 'pareto.json'} and {run.path / 'report.html'}")


def _print_front(pareto: ParetoDocument) -> None:
    from rich.table import Table

    from automl.run.documents import Deployed

    table = Table(title="Pareto front, re-measured (latency: ONNX Runtime, batch 1)")
    columns = ("trial", "val acc", "test acc", "ONNX ms", "×", "shipped", "ONNX kB")
    for col in (*columns, "packed kB"):
        table.add_column(col, justify="right")
    for m in sorted(pareto.front, key=lambda m: -m.val_accuracy):
        knee = " knee" if m.trial == pareto.knee_trial else ""
        onnx_ms = (m.measured_latency_ms or {}).get("onnxruntime", {}).get("batch_1")
        speedup = (m.speedup or {}).get("onnxruntime", {}).get("batch_1")
        deployed = m.deployed if isinstance(m.deployed, Deployed) else None
        shipped = "failed check" if deployed is None else deployed.format
        if deployed is not None and deployed.fallback:
            shipped += " (int8 failed)"
        table.add_row(
            f"{m.trial}{knee}",
            f"{m.val_accuracy:.4f}",
            f"{m.test_accuracy:.4f}",
            "-" if onnx_ms is None else f"{onnx_ms:.3f}",
            "-" if speedup is None else f"{speedup:.1f}x",
            shipped,
            "-" if deployed is None else f"{deployed.onnx_bytes / 1000:.1f}",
            f"{m.size_bytes / 1000:.1f}",
        )
    stdout.print(table)
    stdout.print(
        "×: speed-up, the teacher's ONNX Runtime batch-1 latency divided by the model's; "
        "packed kB counts each weight at its bit-width, ONNX kB is the file pick ships",
        highlight=False,
    )


@app.command()
def pick(
    run_path: RunArg,
    max_latency_ms: Annotated[
        float | None, typer.Option(help="ONNX Runtime batch-1 latency limit [default: none]")
    ] = None,
    max_size_kb: Annotated[
        float | None,
        typer.Option(help="model.onnx size limit, kilobytes of 1000 bytes [default: none]"),
    ] = None,
    min_accuracy: Annotated[
        float | None, typer.Option(help="validation accuracy floor, 0..1 [default: none]")
    ] = None,
    trial: Annotated[
        int | None,
        typer.Option(help="export this front trial [default: the most accurate that fits]"),
    ] = None,
    out: Annotated[
        Path | None, _path_option("export folder [default: <run>/export/trial_NNNN]")
    ] = None,
    batch: BatchOpt = 32,
    rounds: RoundsOpt = 7,
) -> None:
    """Pick the most accurate front model within the limits and export it (ONNX, weights,
    architecture, model card). Exit status 1 when no model fits."""
    import automl
    from automl.deploy.check import ExportCheckFailed
    from automl.deploy.export import check_out_dir
    from automl.deploy.pick import Constraints
    from automl.errors import UserError

    try:
        automl.check_constraints(Constraints(max_latency_ms, max_size_kb, min_accuracy), trial)
        run = automl.open_run(run_path)
        if trial is not None:
            run.member(trial)
        if out is not None:
            check_out_dir(out)  # before `report` may run: a refusal writes nothing
        measure = automl.MeasureOptions(batch, rounds)
        picked = run.pick(max_latency_ms, max_size_kb, min_accuracy, trial, measure, _say)
        card = picked.export(out)
    except automl.NoModelFits as exc:
        stderr.print(str(exc), highlight=False, markup=False)
        raise typer.Exit(1) from None
    except UserError as exc:
        _fail(str(exc))
    except ExportCheckFailed as exc:
        stderr.print(f"[bold red]export failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    m = card["metrics"]
    lat = card["onnxruntime_latency_ms"]["model.onnx"]
    stdout.print(
        f"picked trial {picked.trial} ({picked.constraints.describe()}): val "
        f"{m['val_accuracy']:.4f}, test {m['test_accuracy']:.4f} (ONNX Runtime "
        f"{m['onnx_test_accuracy']:.4f}), {card['format']} model.onnx "
        f"{m['onnx_bytes'] / 1000:.1f} kB, {lat['batch_1']:.3f} ms at batch 1\n"
        f"exported to {picked.folder}",
        highlight=False,
    )


@app.command()
def train(
    architecture: Annotated[
        Path,
        typer.Argument(
            parser=given_path,
            metavar="ARCH",
            help="architecture.json of an export, or models/trial_NNNN.json",
        ),
    ],
    run_path: Annotated[
        Path | None, _path_option("take the config of this run [default: --config]", "--run")
    ] = None,
    config: ConfigOpt = None,
    seed: Annotated[
        int | None,
        typer.Option(min=0, max=2**31 - 1, help="trial seed [default: the config's seed]"),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1, max=1000, help="training epochs [default: the config's training.epochs]"
        ),
    ] = None,
    no_kd: Annotated[
        bool, typer.Option("--no-kd", help="cross-entropy only, no distillation")
    ] = False,
    out: Annotated[
        Path | None, _path_option("save the trained student here [default: not saved]")
    ] = None,
) -> None:
    """Train and score one architecture with the search's recipe (data, teacher, epochs)."""
    from automl.deploy.retrain import check_out_file, read_architecture, train_architecture
    from automl.errors import UserError

    if run_path is not None and config is not None:
        _fail("give either --run or --config, not both")
    try:
        arch = read_architecture(architecture)
        if out is not None:
            check_out_file(out / "model.safetensors")
        if run_path is not None:
            from automl.run.finished import open_search_run

            cfg = open_search_run(run_path).config
            if epochs is not None:
                cfg = cfg.model_copy(
                    update={"training": cfg.training.model_copy(update={"epochs": epochs})}
                )
        else:
            cfg = _load(config, {"training.epochs": epochs})
        result = train_architecture(cfg, arch, cfg.seed if seed is None else seed, not no_kd, out)
    except UserError as exc:
        _fail(str(exc))
    stdout.print_json(result.model_dump_json())


def main() -> None:
    show_progress()
    app()


if __name__ == "__main__":
    sys.exit(main())
