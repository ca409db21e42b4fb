"""Console lines of the commands: one function, so that data-parallel ranks other than rank 0 can be made quiet in one
place and a progress bar is redrawn below each line."""

from __future__ import annotations

import sys
from typing import Any

# Data-parallel training (train/distributed.py): every rank but rank 0 is quiet, so the console shows one run.
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def log(msg: str, bar: Any = None) -> None:
    """A console line; through the progress bar when there is one, so the bar is redrawn below it."""
    if _quiet:
        return
    if bar is not None:
        bar.write(msg, file=sys.stdout)
    else:
        print(msg, flush=True)
