"""Atomic file writes: a crash, a kill or a full disk at any point leaves either the old file or the new one, never a
torn one. Checkpoints, the run's logs and statistics, split records and reports are all written through
:func:`atomic_write` (called through this module, so a test can intercept every writer at once)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _fsync_dir(directory: Path) -> None:
    """Makes a rename in ``directory`` durable. Not possible on Windows (directories cannot be opened): skipped."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Writes a file through ``write(fileobj)`` so that a crash at any point leaves either the old file or the new one:
    a temporary file in the same folder, flushed and fsynced, renamed over ``path``, then the folder fsynced."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
