"""Run files: atomic writes, and a reader of the JSON-lines logs that skips a torn line.

A crash, a kill or a full disk at any point of an atomic write leaves either the old file or the new one, never a
torn one. Checkpoints, the run's logs and statistics, split records and reports are all written through
:func:`atomic_write` (called through this module, so a test can intercept every writer at once)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import: the process's umask does not change under a run


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
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes it owner-only; the file gets what open() would give it
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            exc.filename = str(path)  # np.save and f.write say "No space left on device" without saying where
        raise
    _fsync_dir(path.parent)


def read_jsonl(path: str | Path, key: str | None = None) -> list[dict[str, Any]]:
    """The records of a JSON-lines file ([] when it does not exist); with ``key``, one record per value of it (the
    last one), sorted by it."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:  # the line the trainer is writing right now, or one torn by a crash
            continue
        if isinstance(r, dict):
            records.append(r)
    if key is None:
        return records
    latest = {r[key]: r for r in records if key in r}
    return [latest[k] for k in sorted(latest)]
