"""What the three command lines (train, evaluate, predict) share: argument types, and how they end on an error.

Every error ends a command with one line on stderr, ``<prog>: error: <what went wrong>``, and a non-zero exit status
(2: a ConfigError, i.e. a flag, a path or the data layout cannot be used; 1: anything else, such as a bad
checkpoint, unreadable images or a diverged run), never with a traceback. ``--debug`` shows the traceback instead, for
bug reports.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Callable

from .arguments import FLOAT32_MAX

EXIT_FAILED = 1
EXIT_UNUSABLE = 2
EXIT_INTERRUPTED = 130


class ConfigError(ValueError):
    """A setting or the data cannot be used (a bad --data path, an unknown dataset, ...). Reported as one line."""


def int_at_least(lo: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {v}")
        return v
    return parse


def float_in(lo: float, hi: float | None = None, lo_open: bool = False,
             hi_closed: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        # The network computes in float32: a value beyond its range would become inf on the way in.
        if abs(v) > FLOAT32_MAX or not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite float32 (|value| <= {FLOAT32_MAX:.4g}), got {text}")
        if (v <= lo if lo_open else v < lo) or (hi is not None and (v > hi if hi_closed else v >= hi)):
            rng = f"{'(' if lo_open else '['}{lo:g}, {'inf' if hi is None else f'{hi:g}'}{']' if hi_closed else ')'}"
            raise argparse.ArgumentTypeError(f"must be in {rng}, got {text}")
        return v
    return parse


def gpu_list(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.split(",") if x.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected GPU ids like 0,1, got {text!r}") from None
    if not ids or any(g < 0 for g in ids):
        raise argparse.ArgumentTypeError(f"expected GPU ids like 0,1, got {text!r}")
    return ids


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback instead of one line")


def describe(exc: BaseException) -> str:
    """One line saying what went wrong. Errors the package raises on purpose (ValueError, TypeError, OSError and
    their subclasses) carry a message written for the user; anything else is a failure the user cannot act on except
    by reporting it, so its type is shown and --debug suggested."""
    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
    first = lines[0] if lines else type(exc).__name__
    if isinstance(exc, MemoryError):
        return (f"out of memory{f' ({first})' if lines else ''}: a size is too large for this machine (try a "
                f"smaller --batch-size or --image-size)")
    if isinstance(exc, (ValueError, TypeError, OSError)):
        return first
    return f"{type(exc).__name__}: {first} (run again with --debug for the traceback)"


def run(prog: str, args: argparse.Namespace, body: Callable[[], int]) -> int:
    """Runs a command's ``body`` and turns any exception into one line on stderr and an exit status (2 for a
    ConfigError, 1 for anything else). With ``args.debug`` the exception propagates with its traceback."""
    try:
        return body()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the point: no traceback for the user
        if getattr(args, "debug", False):
            raise
        print(f"{prog}: error: {describe(exc)}", file=sys.stderr)
        return EXIT_UNUSABLE if isinstance(exc, ConfigError) else EXIT_FAILED


def command(prog: str, parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int],
            argv: list[str] | None = None) -> int:
    """A command's main: parse ``argv`` (default: the command line), then :func:`run` ``body(args)``."""
    args = parser.parse_args(argv)
    return run(prog, args, lambda: body(args))
