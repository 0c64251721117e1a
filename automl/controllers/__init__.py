"""Controllers, registered by `search.backend`. Adding one touches one file and one line here.

Backends load on first use, so the Ray backend's optional dependency is needed only with it.
"""

from __future__ import annotations

import importlib

from automl.controllers.base import Controller, ControllerTimes, SearchFailed
from automl.errors import UserError

# backend name -> (module, class, pip extra that provides it)
CONTROLLERS: dict[str, tuple[str, str, str | None]] = {
    "optuna": ("automl.controllers.optuna_backend", "OptunaController", None),
    "ray": ("automl.controllers.ray_backend", "RayController", "ray"),
}


def list_controllers() -> list[str]:
    return sorted(CONTROLLERS)


def controller_class(name: str) -> type[Controller]:
    try:
        module, cls, extra = CONTROLLERS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {list_controllers()}") from None
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise UserError(
            f"backend {name!r} needs the {extra!r} extra: pip install -e '.[{extra}]' ({exc})"
        ) from None


def create_controller(name: str, *args, **kwargs) -> Controller:
    return controller_class(name)(*args, **kwargs)


__all__ = ["Controller", "ControllerTimes", "SearchFailed", "create_controller", "list_controllers"]
