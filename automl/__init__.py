"""Compression search: pruned, quantized students distilled from a timm teacher.

The public surface is `automl.api`'s, importable from here: `search`, `resume`, `finalize`,
`open_run` (a `Run`: `front`, `teacher`, `trials`, `report`, `pick`), `Picked` (`model`,
`export`). It is imported on first use, so `import automl` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = (
    "MeasureOptions",
    "NoModelFits",
    "Picked",
    "Run",
    "check_constraints",
    "experiment_config",
    "finalize",
    "open_run",
    "resume",
    "search",
)
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from automl import api

        return getattr(api, name)
    raise AttributeError(f"module 'automl' has no attribute {name!r}")
