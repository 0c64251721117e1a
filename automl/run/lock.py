"""One process at a time in a run directory.

A second search, `--resume`, finalize, report or pick on a run that another process is
writing would mark the live process's trial as interrupted and rewrite its files under it.
Each of those commands holds an advisory lock on `RUN/.lock` (`flock`) while it works; a
second process is refused with the PID of the holder. The kernel drops the lock when its
holder dies, however it dies, so a killed search leaves no stale lock to clean up. The lock
is re-entrant within one process (search runs finalize inside it).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from automl.errors import UserError
from automl.files import WriteFailed
from automl.paths import missing_folders, remove_empty

LOCK_NAME = ".lock"

_held: dict[Path, int] = {}  # run directory -> depth of nested holds in this process


@contextmanager
def run_lock(run_path: Path) -> Iterator[None]:
    """Hold the run directory's lock for the `with` block; raise UserError naming the
    holder's PID when another process holds it. A directory made for the lock is removed again
    when the block wrote nothing else into it (a command stopped by bad input)."""
    key = Path(run_path).resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    created = missing_folders(key)
    try:
        key.mkdir(parents=True, exist_ok=True)
        fd = os.open(key / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # /proc, a read-only mount: before any work
        remove_empty(created)
        raise WriteFailed(Path(exc.filename or key), exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UserError(
                f"run directory {run_path} is in use by process {holder} (a search, finalize, "
                "report or pick); wait for it to end or stop it, then run this again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            if created and [p.name for p in key.iterdir()] == [LOCK_NAME]:
                _remove_empty(created)  # the command stopped before writing: leave no folder
    finally:
        os.close(fd)  # releases the lock; the file stays (deleting it would race a waiter)


def _remove_empty(created: list[Path]) -> None:
    """Remove the lock, then the folders this process created for it while they are empty."""
    try:
        (created[0] / LOCK_NAME).unlink()
    except OSError:
        return  # another process took it meanwhile
    remove_empty(created)
