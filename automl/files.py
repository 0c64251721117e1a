"""Every file the tool writes goes through here: whole or not at all, and a failed write is one
message.

`write_file` writes through a temporary file beside its target and renames it over the target,
so a killed process or a full disk never leaves half a file. When the disk refuses (full,
read-only, no permission), the temporary file is removed and `WriteFailed`, a UserError, names
the file, the reason and, for a full disk, the space free beside the space the write needed.
`_write_bytes` is the one place where bytes reach a disk, so the tests make writes fail there.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from automl.errors import UserError
from automl.paths import missing_folders, remove_empty


class WriteFailed(UserError):
    """A file could not be written; the message says which, why and what to do."""

    def __init__(self, path: Path, exc: OSError, needed: int | None = None) -> None:
        self.path, self.errno = path, exc.errno
        reason = exc.strerror or str(exc)
        text = f"cannot write {path}: {reason}"
        if exc.errno == errno.ENOSPC:
            wanted = "" if needed is None else f", {_size(needed)} needed"
            text += f" ({_free(path.parent)} free there{wanted}); free space"
        elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            text += "; write somewhere writable (another --out or cache_dir)"
        super().__init__(text)


def write_file(path: Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8, as given: no newline translation) to `path` atomically."""
    raw = data.encode() if isinstance(data, str) else data
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        _write_bytes(tmp, raw)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WriteFailed(path, exc, len(raw)) from None


def write_json(path: Path, doc: Any) -> None:
    """`doc` as indented JSON with a final newline."""
    write_file(path, json.dumps(doc, indent=2) + "\n")


def save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """`tensors` as a safetensors file, atomically."""
    write_file(path, save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))


def check_writable(folder: Path) -> None:
    """Raise WriteFailed unless a file can be written in `folder`, found before any work: a
    read-only mount, /proc, a full disk, no permission. The folder and any parents made for
    the check are removed again."""
    made = missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise WriteFailed(Path(exc.filename or folder), exc, 4096) from None
    finally:
        remove_empty(made)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def _free(folder: Path) -> str:
    try:
        return _size(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown"


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
