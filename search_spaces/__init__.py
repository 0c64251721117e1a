"""Search spaces: registered presets of SearchSpaceConfig, picked by `search_space.name`."""

from __future__ import annotations

import fnmatch
from typing import Any

from search_spaces.architecture import Architecture
from search_spaces.dimensions import ChoiceDim, Dimension, FixedDim, FloatDim, IntDim, Suggester

# Each preset lists only what it changes from the defaults (those of SearchSpaceConfig and of
# each technique's own `space`).
SEARCH_SPACES: dict[str, dict[str, Any]] = {
    # depth, channels and weight bits per stage; pruning criterion and KD recipe
    "stagewise": {},
    # one channels-kept fraction and one bit-width for the whole network: a smaller space
    "uniform": {"shared_stages": True},
    # structured pruning and distillation only; weights stay fp32
    "pruning": {"techniques": ["depth", "channels"]},
}


def list_search_spaces(pattern: str = "*") -> list[str]:
    return sorted(n for n in SEARCH_SPACES if fnmatch.fnmatch(n, pattern))


def create_search_space(name: str = "stagewise", **overrides: Any) -> SearchSpaceConfig:
    """The preset `name` with `overrides` applied; unknown names list the registered ones."""
    return SearchSpaceConfig.model_validate({"name": name, **overrides})


from search_spaces.space import BoundSearchSpace, SearchSpaceConfig  # noqa: E402

__all__ = [
    "SEARCH_SPACES",
    "Architecture",
    "BoundSearchSpace",
    "ChoiceDim",
    "Dimension",
    "FixedDim",
    "FloatDim",
    "IntDim",
    "SearchSpaceConfig",
    "Suggester",
    "create_search_space",
    "list_search_spaces",
]
