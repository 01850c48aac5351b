"""Atomic file writes: a killed process leaves either the old file or the new one, never half of one.

The data is written to a uniquely named hidden temp file in the target's folder, then renamed over
the target (`os.replace` is atomic on POSIX within a file system); the temp file is removed if
anything fails before the rename. The file gets the permissions a plain `open()` would give it
(0666 less the umask), not mkstemp's private 0600. `atomic_path` gives that temp path to a writer that wants a file
name (safetensors' `save_file`); `write_atomic` and `write_json` write data through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # read once: setting the umask to read it is not thread-safe


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temp file path next to `path`; renamed over `path` when the block ends without error."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write `data` (text as UTF-8, or bytes) to `path` atomically; the folder must exist."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def write_json(path: str | os.PathLike, data) -> None:
    """`data` as indented UTF-8 JSON (values JSON cannot hold as their str), atomically."""
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
