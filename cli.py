"""Command line: thin commands that load a config and call `automl`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Find compact students of a timm teacher: prune, quantize, distil.",
)
stderr = Console(stderr=True)
stdout = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML experiment config")]


def _fail(message: str) -> None:
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(2)


def _load(config: Path | None, overrides: dict[str, Any]):
    from automl.config import load_config

    return load_config(config, overrides)


@app.command()
def search(
    config: ConfigOpt = None,
    budget: Annotated[int | None, typer.Option(help="completed trials to reach")] = None,
    epochs: Annotated[int | None, typer.Option(help="distillation epochs per trial")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    sampler: Annotated[str | None, typer.Option(help="tpe | nsga2 | random")] = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/<name>)")] = None,
    name: Annotated[str | None, typer.Option(help="run and study name")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue the run in the run dir")
    ] = False,
) -> None:
    """Search for students and write the run directory (study, trials, Pareto front, report)."""
    from automl.errors import UserError
    from automl.search import resume_config, run_search

    try:
        if resume:
            extra = [
                flag
                for flag, v in (
                    ("--epochs", epochs),
                    ("--seed", seed),
                    ("--sampler", sampler),
                    ("--config", config),
                )
                if v is not None
            ]
            if extra:
                _fail(
                    f"--resume continues a run with its own config; drop {', '.join(extra)} "
                    "(only --budget may raise its budget)"
                )
            run_path = _load(None, {"out": out, "name": name}).run_dir
            cfg = resume_config(run_path, budget)
        else:
            cfg = _load(
                config,
                {
                    "search.budget": budget,
                    "training.epochs": epochs,
                    "seed": seed,
                    "search.sampler": sampler,
                    "out": out,
                    "name": name,
                },
            )
        summary = run_search(cfg, resume=resume)
    except UserError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        stderr.print("interrupted; finished trials are kept. Continue with --resume.")
        raise typer.Exit(130) from None
    stdout.print(
        f"done: {summary.completed} trials, front of {summary.front_size}, hypervolume "
        f"{summary.hypervolume:.4f}, {summary.wall_seconds:.0f} s "
        f"(controller overhead {100 * summary.controller_overhead_fraction:.1f}%)\n"
        f"run directory: {summary.run_dir}  (report.html, pareto.json, trials.csv, models/)",
        highlight=False,
    )


@app.command()
def teacher(
    config: ConfigOpt = None,
    seed: Annotated[int | None, typer.Option()] = None,
    retrain: Annotated[bool, typer.Option("--retrain", help="train even if cached")] = False,
) -> None:
    """Train the config's teacher (or load it from the cache) and show its card."""
    from automl.errors import UserError
    from automl.search import prepare

    try:
        _, t, _ = prepare(_load(config, {"seed": seed}), retrain=retrain)
    except UserError as exc:
        _fail(str(exc))
    stdout.print_json(t.card.model_dump_json())
    stdout.print(f"cached in {t.cache_dir}", highlight=False)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    sys.exit(main())
