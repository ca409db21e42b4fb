"""One run directory, one run: a lock that a training run (or a study) holds on its directory for its whole life.

Two trainings into the same ``--out`` would interleave their logs and overwrite each other's checkpoints, and a
check made before either has written lets both through. So the run takes ``OUT/.lock`` before it reads or writes
anything in the directory, and keeps it until it ends:

* The lock is an exclusive ``flock`` on the file, which the kernel drops when the process ends in any way (exit,
  Ctrl-C, a crash, ``kill -9``). The file also names the holder (host, pid, when, the command), so that a refused
  run can say who holds it.
* On release the holder empties the file. A file that still names a holder but whose ``flock`` is free was left by
  a process that died: on the same host that process is certainly gone (its ``flock`` would still be held), so the
  new run takes over, with a warning. A holder on another host (a shared filesystem, where ``flock`` may not reach
  across machines) cannot be checked from here: the run refuses and says how to clear the lock by hand.

Readers (``evaluate``, ``predict``, ``report``) never take the lock: checkpoints are replaced atomically and the
logs' readers skip a torn last line.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..cli import ConfigError

LOCK_NAME = ".lock"


class RunLocked(ConfigError):
    """Another run holds the directory (a ConfigError: the command ends with one line and status 2)."""


# The fds of the locks this process holds. A forked child (a data-loader worker) shares each fd's flock with its
# parent; it closes its copies at once, so a SIGKILLed run's lock goes when the run does, not when its orphaned
# workers notice (closing a copy leaves the parent's flock held; only LOCK_UN would drop it for both).
_HELD: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


def _holder_text(holder: dict) -> str:
    return (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}"
            f"{', since ' + holder['since'] if holder.get('since') else ''}")


def _read_holder(fd: int) -> dict | None:
    """The holder recorded in the lock file, or None when it is empty (released) or unreadable."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    if not data.strip():
        return None
    try:
        holder = json.loads(data)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


class RunLock:
    """Holds ``directory``'s lock from :meth:`acquire` until :meth:`release` (or the process's end).

    ``what`` names the holder's kind in messages ('run', 'study'); ``log`` receives the take-over warning."""

    def __init__(self, directory: str | os.PathLike, what: str = "run", log=None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.what = what
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                holder = _read_holder(fd) or {}
                raise RunLocked(f"the run directory {self.directory} is in use by another {holder.get('what', 'run')} "
                                f"({_holder_text(holder)}): wait for it to end, or choose another --out") from None
            self._check_stale(_read_holder(fd))
            me = {"what": self.what, "host": socket.gethostname(), "pid": os.getpid(),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": " ".join(sys.argv)}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(me) + "\n").encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _HELD.add(fd)
        return self

    def _check_stale(self, holder: dict | None) -> None:
        """The lock was free: a holder still named in the file died without releasing it."""
        if holder is None:
            return
        host = holder.get("host")
        if host is not None and host != socket.gethostname():
            raise RunLocked(
                f"{self.path} names a {holder.get('what', 'run')} on another machine ({_holder_text(holder)}), which "
                f"cannot be checked from here: if no run is going on there, delete {self.path} and start again")
        self._log(f"WARNING: taking over {self.path}, left by {_holder_text(holder)}, which is no longer running")

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _HELD.discard(fd)
        try:
            os.ftruncate(fd, 0)  # released: nobody is named any more
        except OSError:
            pass  # a full or read-only disk: the flock still goes, and the next run takes over with a warning
        finally:
            os.close(fd)  # drops the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
