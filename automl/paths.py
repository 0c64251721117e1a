"""Where a command may write: checked before any work, so bad output paths cost nothing."""

from __future__ import annotations

from pathlib import Path


def file_in_the_way(path: Path) -> Path | None:
    """The first of `path`'s parents, nearest first, that exists and is no folder (so nothing
    can be created at `path`), or None."""
    return next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
