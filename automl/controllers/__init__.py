"""Controllers, registered by `search.backend`: adding one is one file and one entry here.

Backends load on first use, so the Ray backend's optional dependency is needed only with it,
and reading this registry (config validation does) imports no backend.
"""

from __future__ import annotations

import fnmatch
import importlib
from typing import Any

from automl.errors import UserError

# backend name -> (module, class, pip extra that provides it)
CONTROLLERS: dict[str, tuple[str, str, str | None]] = {
    "optuna": ("automl.controllers.optuna_backend", "OptunaController", None),
    "ray": ("automl.controllers.ray_backend", "RayController", "ray"),
}


def list_controllers(pattern: str = "*") -> list[str]:
    return sorted(n for n in CONTROLLERS if fnmatch.fnmatch(n, pattern))


def controller_class(name: str) -> type:
    """The class of backend `name`, a subclass of `automl.controllers.base.Controller`."""
    try:
        module, cls, extra = CONTROLLERS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; registered: {list_controllers()}") from None
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise UserError(
            f"backend {name!r} needs the {extra!r} extra: pip install -e '.[{extra}]' ({exc})"
        ) from None


def create_controller(name: str, *args: Any, **kwargs: Any) -> Any:
    """A `Controller` of backend `name`; the arguments are its constructor's."""
    return controller_class(name)(*args, **kwargs)


__all__ = ["CONTROLLERS", "controller_class", "create_controller", "list_controllers"]
