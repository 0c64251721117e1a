"""Compression techniques, registered by name; `search_space.techniques` chooses among them.

Every public module of this package is a technique and is imported with the package, so a new
technique is one new file whose class carries `@register_technique`. A technique kept outside
the package registers the same way from a module listed under `plugins:` in the experiment
config. `_base.py` states the contract.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil

from automl.compress._base import (
    BuildContext,
    DeployForm,
    PerStage,
    StageField,
    StepHook,
    Student,
    Technique,
    TechniqueParams,
    TensorCost,
    combine_forms,
    onnx_format,
)

_TECHNIQUES: dict[str, Technique] = {}

# The techniques of every search before they became plugins; architecture files and run
# directories that name no techniques were made with these.
LEGACY_TECHNIQUES = ("channels", "depth", "weight_quant")


def register_technique(cls: type[Technique]) -> type[Technique]:
    """Class decorator: register one instance of `cls` under `cls.name`. Refuses a name that is
    taken, a field name another technique uses, and a field without a default dimension."""
    name = cls.name
    if name in _TECHNIQUES and _where(type(_TECHNIQUES[name])) != _where(cls):
        raise ValueError(
            f"technique {name!r} is registered already, by {_where(type(_TECHNIQUES[name]))}"
        )
    fields = set(cls.Params.model_fields)
    for other in _TECHNIQUES.values():
        clash = fields & set(other.Params.model_fields)
        if other.name != name and clash:
            raise ValueError(
                f"technique {name!r}: field(s) {sorted(clash)} belong to {other.name!r} already"
            )
    missing = fields - set(cls.space)
    if missing:
        raise ValueError(f"technique {name!r}: no default dimension in `space` for {missing}")
    _TECHNIQUES[name] = cls()
    return cls


def _where(cls: type) -> str:
    """A class's module and name: the same technique imported twice registers once."""
    return f"{cls.__module__}.{cls.__qualname__}"


def get_technique(name: str) -> Technique:
    try:
        return _TECHNIQUES[name]
    except (KeyError, TypeError):  # TypeError: a list or a mapping, no name
        raise ValueError(
            f"unknown compression technique {name!r}; registered: {list_techniques()}"
        ) from None


def list_techniques(pattern: str = "*") -> list[str]:
    return sorted(n for n in _TECHNIQUES if fnmatch.fnmatch(n, pattern))


def techniques_in_order(names: tuple[str, ...] | list[str]) -> list[Technique]:
    """The named techniques in the order `build_student` applies them."""
    return sorted((get_technique(n) for n in names), key=lambda t: (t.order, t.name))


def owner_of(field_name: str) -> Technique | None:
    """The registered technique whose `Params` has `field_name`."""
    return next((t for t in _TECHNIQUES.values() if field_name in t.Params.model_fields), None)


for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "LEGACY_TECHNIQUES",
    "BuildContext",
    "DeployForm",
    "PerStage",
    "StageField",
    "StepHook",
    "Student",
    "Technique",
    "TechniqueParams",
    "TensorCost",
    "combine_forms",
    "get_technique",
    "list_techniques",
    "onnx_format",
    "owner_of",
    "register_technique",
    "techniques_in_order",
]
