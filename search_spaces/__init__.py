"""Search spaces: registered presets of SearchSpaceConfig, picked by `search_space.name`."""

from __future__ import annotations

import fnmatch
from typing import Any

from search_spaces.architecture import Architecture, StageArchitecture
from search_spaces.dimensions import ChoiceDim, Dimension, FixedDim, FloatDim, IntDim, Suggester

# Each preset lists only what it changes from SearchSpaceConfig's defaults.
SEARCH_SPACES: dict[str, dict[str, Any]] = {
    # per stage: channels kept, blocks kept, weight bits; criterion and KD recipe
    "stagewise": {},
    # one channels-kept fraction and one bit-width for the whole network: a smaller space
    "uniform": {"shared_stages": True},
    # structured pruning and distillation only; weights stay fp32
    "pruning": {"bits": 32, "stem_head_bits": 32},
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
    "StageArchitecture",
    "Suggester",
    "create_search_space",
    "list_search_spaces",
]
