"""Controllers, registered by `search.backend`. Adding one touches one file and one line here."""

from __future__ import annotations

from automl.controllers.base import Controller, ControllerTimes, SearchFailed
from automl.controllers.optuna_backend import OptunaController

CONTROLLERS: dict[str, type[Controller]] = {"optuna": OptunaController}


def list_controllers() -> list[str]:
    return sorted(CONTROLLERS)


def create_controller(name: str, *args, **kwargs) -> Controller:
    try:
        cls = CONTROLLERS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {list_controllers()}") from None
    return cls(*args, **kwargs)


__all__ = ["Controller", "ControllerTimes", "SearchFailed", "create_controller", "list_controllers"]
