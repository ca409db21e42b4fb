"""The fuzz suite's machinery (test_fuzz_*.py): Hypothesis profiles, a child process that runs the cases, and the
checks every outcome must pass.

Cases run in one long-lived child process (started once: interpreter start-up and ``import alexnet_cuda`` cost about
a second), which reads pickled calls from a pipe and answers each with its result or its exception. A crash
(SIGSEGV, abort) or a hang kills only the child: the case in flight is the failure that pytest reports, with its
arguments, and the next case starts a new child.

Profiles, chosen with the environment variable ALEXNET_FUZZ: ``ci`` (the default; a fixed seed and few examples, the
whole suite in well under two minutes on two cores) and ``long`` (many more examples, a random seed, and Hypothesis's
example database in .hypothesis/ so that failures found once are replayed first).
"""

from __future__ import annotations

import os
import pickle
import re
import select
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("ALEXNET_FUZZ", "ci")
settings.register_profile("ci", max_examples=75, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(PROFILE)

CASE_TIMEOUT_S = 60.0  # a tiny case takes milliseconds: this long means it hangs
FLOAT32_MAX = float(np.finfo(np.float32).max)
_HEADER = struct.Struct("<Q")


class Outcome(NamedTuple):
    """What a call did in the child: returned ``value`` or raised ``error`` (the exception's type name), with
    ``message``; ``clean`` says whether the exception is a TypeError or ValueError (subclasses included)."""

    value: Any = None
    error: str | None = None
    message: str = ""
    clean: bool = False
    memory: bool = False


# ---- arguments that must stay what they are across the pipe --------------------------------------------------------
class View(np.ndarray):
    """A strided or reversed view that arrives in the child as the same kind of view: pickling a plain view would
    send a contiguous copy, and the op would never see the layout under test."""

    def __reduce__(self):
        return (take_view, (self._source, self._key))


def view_of(source: np.ndarray, key) -> View:
    v = source[key].view(View)
    v._source, v._key = np.ascontiguousarray(source), key
    return v


def take_view(source: np.ndarray, key) -> np.ndarray:
    return source[key]


# ---- the child process ----------------------------------------------------------------------------------------
def _to_plain(value: Any) -> Any:
    """Results as picklable NumPy values (Tensors become arrays)."""
    from alexnet_cuda import Tensor

    if isinstance(value, Tensor):
        return value.numpy()
    if isinstance(value, (tuple, list)):
        return type(value)(_to_plain(v) for v in value)
    return value


def _serve(channel: int) -> None:
    with os.fdopen(channel, "wb") as out, os.fdopen(0, "rb") as inp:
        while True:
            header = inp.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            fn, args, kwargs = pickle.loads(inp.read(_HEADER.unpack(header)[0]))
            try:
                answer = Outcome(value=_to_plain(fn(*args, **kwargs)))
            except Exception as exc:  # noqa: BLE001 - every exception is an answer
                answer = Outcome(error=type(exc).__name__, message=str(exc),
                                 clean=isinstance(exc, (TypeError, ValueError)), memory=isinstance(exc, MemoryError))
            data = pickle.dumps(answer)
            out.write(_HEADER.pack(len(data)) + data)
            out.flush()


class Child:
    """The parent's handle on the child process (one per test session)."""

    def __init__(self, timeout: float = CASE_TIMEOUT_S) -> None:
        self.proc: subprocess.Popen | None = None
        self.timeout = timeout

    def _start(self) -> None:
        here = Path(__file__).resolve().parent  # the fuzz tests' folder; its parent holds the shared test helpers
        import alexnet_cuda

        package_parent = str(Path(alexnet_cuda.__file__).resolve().parents[1])
        path = [str(here), str(here.parent), package_parent, os.environ.get("PYTHONPATH", "")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path),
                   OMP_NUM_THREADS="1")
        # The answers go to a pipe of their own: whatever the library prints on stdout cannot corrupt them.
        read_end, write_end = os.pipe()
        self.proc = subprocess.Popen([sys.executable, __file__, str(write_end)], stdin=subprocess.PIPE, env=env,
                                     pass_fds=(write_end,), stdout=subprocess.DEVNULL)
        os.close(write_end)
        self._answers = read_end

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            os.close(self._answers)
            self.proc = None

    def _read(self, n: int, deadline: float, what: str) -> bytes:
        import time

        data = b""
        while len(data) < n:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._answers], [], [], max(left, 0.0))
            if not ready:
                self.close()
                raise AssertionError(f"hang: {what} did not return within {self.timeout:g} s")
            chunk = os.read(self._answers, n - len(data))
            if not chunk:
                code = self.proc.wait()
                self.close()
                how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
                raise AssertionError(f"crash: the child process died ({how}) running {what}")
            data += chunk
        return data

    def call(self, fn, *args: Any, **kwargs: Any) -> Outcome:
        """Runs ``fn(*args, **kwargs)`` in the child. A crash or a hang fails the calling test, naming the call."""
        import time

        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start()
        what = f"{getattr(fn, '__qualname__', fn)}(*{_short(args)}, **{_short(kwargs)})"
        data = pickle.dumps((fn, args, kwargs))
        try:
            self.proc.stdin.write(_HEADER.pack(len(data)) + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.close()
            raise AssertionError(f"crash: the child process died before running {what}") from None
        deadline = time.monotonic() + self.timeout
        size = _HEADER.unpack(self._read(_HEADER.size, deadline, what))[0]
        return pickle.loads(self._read(size, deadline, what))


def _short(value: Any) -> str:
    """A call's arguments for a failure message: arrays by dtype and shape (and whether they hold NaN/inf)."""
    if isinstance(value, np.ndarray):
        finite = "" if value.dtype.kind not in "fc" or np.isfinite(value).all() else ", non-finite"
        return f"array({value.dtype}, {value.shape}{finite})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)) and any(isinstance(v, np.ndarray) for v in value):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    return repr(value)


# ---- checks ---------------------------------------------------------------------------------------------------
def assert_clean_error(outcome: Outcome, op: str | tuple[str, ...], names: list[str], call: str = "") -> None:
    """The call raised a TypeError/ValueError whose message starts with ``op:`` (one of them, for a tuple) and names
    one of ``names`` (the arguments it may blame). A MemoryError naming the op is clean too: a size no machine has
    is refused by the allocator, and that is the honest answer."""
    assert outcome.error is not None, f"{call}: expected an error, got a result"
    prefixes = tuple(f"{o}:" for o in ((op,) if isinstance(op, str) else op))
    assert outcome.message.startswith(prefixes), f"{call}: the message does not start with {prefixes}: " \
                                                 f"{outcome.message}"
    if outcome.memory:
        return
    assert outcome.clean, f"{call}: raised {outcome.error}: {outcome.message} (expected TypeError/ValueError)"
    # Letter runs, plus identifiers with digits so that names such as beta1 count too.
    words = set(re.findall(r"[A-Za-z_]+", outcome.message)) | set(re.findall(r"[A-Za-z_]\w*", outcome.message))
    assert any(n in words for n in names), f"{call}: the message names none of {names}: {outcome.message}"


def assert_matches_reference(ours: Any, ref: Any, call: str = "") -> None:
    """``ours`` (float32) equals the float64 reference wherever the exact answer is a float32 number: NaN or inf
    where the reference is finite is a silent wrong answer."""
    if isinstance(ref, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(ref), f"{call}: {ours!r} vs {ref!r}"
        for a, b in zip(ours, ref):
            assert_matches_reference(a, b, call)
        return
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{call}: shape {ours.shape}, the reference's {ref.shape}"
    representable = np.isfinite(ref) & (np.abs(ref) <= FLOAT32_MAX)
    assert np.isfinite(ours[representable]).all(), f"{call}: NaN/inf where the exact answer is finite"
    scale = max(1.0, float(np.abs(ref[representable]).max(initial=0.0)))
    diff = np.abs(ours - ref)[representable].max(initial=0.0)
    assert diff <= 1e-3 * scale, f"{call}: differs from the reference by {diff:.3g} (scale {scale:.3g})"


if __name__ == "__main__":  # the child: python fuzz_harness.py <answer fd>
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; it kills the child
    import fuzz_harness  # under its own name, so that answers unpickle in the parent as fuzz_harness.Outcome

    fuzz_harness._serve(int(sys.argv[1]))
