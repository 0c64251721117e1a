"""Where a command may read and write: paths checked before any work, so bad ones cost nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator

EMPTY = "an empty path, which would mean the current folder; name one (. for the current)"


def _given(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError(EMPTY)
    return value


# A path a config file names: "" is refused, since Path("") is the current folder, where a
# run or a cache would be written among the user's own files.
GivenPath = Annotated[Path, BeforeValidator(_given)]


def given_path(value: str) -> Path:
    """The same for a command-line option (typer's `parser`): "" is refused."""
    import typer

    if not value.strip():
        raise typer.BadParameter(EMPTY)
    return Path(value)


def file_in_the_way(path: Path) -> Path | None:
    """The first of `path`'s parents, nearest first, that exists and is no folder (so nothing
    can be created at `path`), or None."""
    return next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)


def not_a_file(path: Path) -> str | None:
    """Why `path` cannot be read as a file (missing, or a folder), or None when it can."""
    if path.is_dir():
        return f"{path} is a folder, not a file"
    if path.exists() and not path.is_file():  # would block, or never end
        return f"{path} is no regular file (a pipe, a device or a socket); name a file"
    if not path.is_file():
        return f"file not found: {path}"
    return None


def missing_folders(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, nearest first: what a command
    that creates `path` must remove again when it is refused."""
    missing = []
    path = Path(path)
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove `folders` (from `missing_folders`), nearest first, while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (another process wrote there), or gone
