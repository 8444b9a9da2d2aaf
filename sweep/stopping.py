"""How a sweep stops before its end, and the exit code that says what to do next.

- Ctrl-C (SIGINT) and SIGTERM (what Slurm, Kubernetes and `kill` send) stop a running sweep the
  same way: Ray Tune ends its loop and saves its state, the CLI says how to resume and exits
  with 130 (SIGINT) or 143 (SIGTERM), the shell's codes for a process stopped by that signal.
  While Ray Tune runs (`tune_running()`), both call Ray Tune's own graceful stop (its SIGUSR1
  handler); when the signal went to the whole process group, Ray's own processes die with it
  and Ray's shutdown would wait a minute for them, so the sweep exits as soon as the local Ray
  it started is gone (its child processes), or after `GRACE_S` at most: what it needs to resume
  is on disk already (`sweep.resume`). Outside Ray's loop, and on a second signal, SIGINT
  raises KeyboardInterrupt and SIGTERM `Terminated`.
- A full disk (ENOSPC, or a quota: EDQUOT) stops the sweep with exit code 75 (EX_TEMPFAIL):
  free space, then run the same command again. Where the sweep itself writes (the journal, a
  finished trial's files) `no_space_is_fatal()` turns it into `DiskFull`, a BaseException, so
  that Ray does not take it for a failed trial and go on; `disk_full(err)` finds it in Ray's
  own errors.
- Bad input, a sweep already running, a changed config: exit code 2, nothing changed.

This module imports nothing heavy, so the CLI can name these exceptions before Ray loads.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

EXIT_SIGINT, EXIT_SIGTERM, EXIT_DISK_FULL = 130, 143, 75
RESUME_HINT = "run the same command again to resume"
GRACE_S = 8.0  # Slurm and Kubernetes send SIGKILL 30 s after SIGTERM by default


class SweepStopped(Exception):
    """The sweep stopped before its last trial; its state is on disk, ready to resume."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(BaseException):
    """SIGTERM arrived outside Ray Tune's loop (a BaseException, like KeyboardInterrupt)."""


class DiskFull(BaseException):
    """No space left where the sweep writes: stop the run, whatever Ray would catch."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


STOP_EXCEPTIONS = (SystemExit, KeyboardInterrupt, Terminated)  # what stop signals raise


def _quiet_stop(hook):
    """An unraisable-exception hook that drops a stop signal's exception (Python would print
    "Exception ignored in: <function _releaseLock>" and a traceback: the user's one line
    would come after it) and passes anything else to `hook`. The signal is not lost:
    `signals_seen` reports it and the caller stops."""

    def quiet(unraisable) -> None:
        if not isinstance(unraisable.exc_value, STOP_EXCEPTIONS):
            hook(unraisable)

    return quiet


@contextmanager
def signals_seen() -> Iterator[set[int]]:
    """The signals that arrive inside the block, whatever handler ran for them (through the
    interpreter's wakeup fd), in the yielded set once the block ends. `ray.init` installs a
    SIGTERM handler that raises SystemExit, and one raised inside an at-fork callback is only
    printed ("Exception ignored"): the sweep then ran on as if never stopped (seen: exit 0
    after a SIGTERM 2.5 s into the start). Inside the block that print is dropped
    (`_quiet_stop`): the caller stops on the signal and says so in one line."""
    seen: set[int] = set()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    hook = sys.unraisablehook
    sys.unraisablehook = _quiet_stop(hook)
    try:
        yield seen
    finally:
        sys.unraisablehook = hook
        signal.set_wakeup_fd(previous)
        try:
            while chunk := os.read(read_end, 512):
                seen.update(chunk)
        except BlockingIOError:
            pass
        os.close(read_end)
        os.close(write_end)


def exit_with(code: int) -> NoReturn:
    """Exit the CLI with `code`, even after a Ctrl-C that the CLI caught. Under `python -m`,
    CPython kills the process with SIGINT at exit (return code -2, not 130) once a
    KeyboardInterrupt has left any `exec` of a string, which imports run (dataclasses,
    namedtuples), although the CLI caught it further up (seen: a Ctrl-C 1 s into the start
    printed the resume hint and still ended -2). A clean `exec` of a string clears that flag."""
    exec("pass")  # noqa: S102 - resets CPython's "unhandled KeyboardInterrupt" flag
    raise SystemExit(code)


@contextmanager
def no_space_is_fatal() -> Iterator[None]:
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(str(err.filename or "")) from err
        raise


_signals: list[int] = []  # stop signals received by this process
_tune: dict[str, threading.Event | bool | None] = {"running": False, "watchdog": None}


def _name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"


def _give_up(signum: int) -> None:
    print(
        f"\n[sweep] stopped ({_name(signum)}); Ray's own processes were stopped too, so its "
        f"shutdown is not waited for; finished trials are kept: {RESUME_HINT}",
        file=sys.stderr,
        flush=True,
    )
    os._exit(EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM)


def _children() -> list[int]:
    """This process's child processes (Linux /proc; [] elsewhere): a local Ray's services."""
    try:
        tasks = os.listdir(f"/proc/{os.getpid()}/task")
        pids = []
        for task in tasks:
            with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
        return pids
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _watch(signum: int, children: list[int], cancelled: threading.Event) -> None:
    """Exit once Ray's local processes are all gone (nothing left to shut down gracefully),
    or after GRACE_S, unless Ray Tune returned first."""
    waited = 0.0
    while waited < GRACE_S:
        if cancelled.wait(0.25):
            return
        waited += 0.25
        if children and not any(_alive(p) for p in children):
            break
    if not cancelled.is_set():
        _give_up(signum)


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    first = not _signals
    _signals.append(signum)
    tune_handler = signal.getsignal(signal.SIGUSR1)  # Ray Tune's graceful stop, while it runs
    if first and _tune["running"] and callable(tune_handler):
        tune_handler(signal.SIGUSR1, frame)
        cancelled = threading.Event()
        threading.Thread(target=_watch, args=(signum, _children(), cancelled), daemon=True).start()
        _tune["watchdog"] = cancelled
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated


def install() -> None:
    """Ctrl-C and SIGTERM stop the sweep cleanly (call in the main thread, and again after
    `ray.init`, which installs a SIGTERM handler of its own)."""
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ray Tune's comes through SIGUSR1
    signal.signal(signal.SIGINT, _on_stop_signal)
    signal.signal(signal.SIGTERM, _on_stop_signal)


@contextmanager
def tune_running() -> Iterator[None]:
    """While Ray Tune runs, a stop signal ends its loop: state saved, the run returns."""
    _tune["running"] = True
    try:
        yield
    finally:
        _tune["running"] = False
        watchdog = _tune["watchdog"]
        if isinstance(watchdog, threading.Event):
            watchdog.set()


def stopped() -> bool:
    """A stop signal (Ctrl-C or SIGTERM) has arrived."""
    return bool(_signals)


def stop_reason() -> tuple[str, int]:
    """(what stopped the sweep, its exit code), for an interrupted run."""
    if _signals and _signals[0] == signal.SIGTERM:
        return "SIGTERM", EXIT_SIGTERM
    return "Ctrl-C", EXIT_SIGINT


def disk_full(err: BaseException) -> str | None:
    """The path (or '') of a 'no space left' error anywhere in `err`'s chain, else None."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return str(e.filename or "")
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return ""
        e = e.__cause__ or e.__context__
    return None
