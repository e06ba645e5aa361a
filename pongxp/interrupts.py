"""Stopping on a signal: Ctrl-C (SIGINT), SIGTERM (``kill``, a job scheduler,
``docker stop``) and SIGHUP (a closed terminal or SSH session) end a command
the same way, at whatever moment they come.

Each raises ``Interrupted``, a KeyboardInterrupt, in the main thread, so one
path handles all three: during training the trainer saves the last batch
boundary and prints its ``interrupted:`` line; before that, it changes nothing
and says so. A second signal while that runs, or while the process then exits,
is ignored, so an impatient second Ctrl-C cannot abort the save, and the exit
code is the first signal's, 128 + its number (130, 143, 129), as shells report.

``command`` installs the handlers before a command imports anything heavy,
so a signal during start-up ends in one line too. Before that, while Python
imports pongxp, SIGTERM and SIGHUP end the process as they do by default, with
no line; the entry scripts' first lines (train.py, ``__main__``, which is also
the console script's) make Ctrl-C do the same instead of printing a
``KeyboardInterrupt`` traceback. A signal that was ignored when the process
started stays ignored: ``nohup`` ignores SIGHUP, and a shell's background jobs
ignore SIGINT.

Rollout worker processes never act on these signals (a terminal sends Ctrl-C
and SIGHUP to them too): ``starting_child`` starts each with the three
blocked, from its first instruction, and the worker ignores them
(``ignore_in_child``); the trainer stops its workers itself.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: What an interrupt of training leaves when it comes before the trainer could say.
BEFORE_TRAINING = "before training began; no file was changed"

_first: int | None = None  # the signal that is ending this process, once one came
_deferred = False  # in ``starting_child``: a signal is acted on when it ends
_pending: int | None = None  # the signal that came while deferred
# The signals ``command`` set to SIG_IGN as an interrupted process exits; ``install``
# handles them again (in the same process, e.g. a test), unlike those ignored at start.
_ignored_on_exit: set[int] = set()


class Interrupted(KeyboardInterrupt):
    """Raised by the signal handler; ``signum`` gives the exit code, 128 + signum.

    ``reported`` is set once a line has told the user what the interrupt left.
    """

    def __init__(self, signum: int, reported: bool = False) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum
        self.reported = reported


def _handle(signum: int, frame: FrameType | None) -> None:
    global _first, _pending
    if _first is not None:
        return  # a second signal: the first one's exit is under way
    if _deferred:
        _pending = signum
        return
    _first = signum
    raise Interrupted(signum)


def received() -> int | None:
    """The signal that is ending this process, if one came since ``install``."""
    return _first


def install() -> dict[int, Any]:
    """Handle the signals of ``HANDLED`` that are not ignored; return the handlers
    they had, for ``restore``."""
    global _first, _pending
    _first = _pending = None
    previous = {}
    for signum in HANDLED:
        if signal.getsignal(signum) is not signal.SIG_IGN or signum in _ignored_on_exit:
            previous[signum] = signal.signal(signum, _handle)
    _ignored_on_exit.clear()
    return previous


def restore(previous: dict[int, Any]) -> None:
    """Put back the handlers ``install`` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def command(job: Callable[[], int], before: str = "") -> int:
    """Run a command's ``job`` with the signals handled; return its exit code.

    Args:
        before: what an interrupt that nothing has reported yet leaves, for its
            line, e.g. ``BEFORE_TRAINING``.

    Returns:
        ``job``'s code, or 128 + the signal's number when it was interrupted.
    """
    previous: dict[int, Any] = {}
    try:
        previous = install()  # (a signal can come as soon as its handler is in)
        return job()
    except BaseException as exc:
        # A signal can also surface as another error, e.g. an ImportError when it
        # lands in a C extension's import.
        if not isinstance(exc, KeyboardInterrupt) and _first is None:
            raise
        signum = _first or getattr(exc, "signum", signal.SIGINT)
        if not getattr(exc, "reported", False):
            name = signal.Signals(signum).name
            print(f"interrupted: {before}" if before else f"interrupted ({name})", flush=True)
        return 128 + signum
    finally:
        if _first is None:
            restore(previous)
        else:
            _ignore_on_exit()


def _ignore_on_exit() -> None:
    """Ignore ``HANDLED`` (those handled now) for the rest of an interrupted process.

    Once interrupted the process is ending, and a late second signal must not kill
    it on its way out: its exit code would become the signal's own (-2, -15)
    instead of 130 or 143. Keeping ``_handle`` is not enough: Python's shutdown
    puts every Python-level handler back to SIG_DFL before it frees the modules
    (which takes a while after a large run), but it leaves SIG_IGN alone.
    """
    for signum in HANDLED:
        if signal.getsignal(signum) is _handle:
            signal.signal(signum, signal.SIG_IGN)
            _ignored_on_exit.add(signum)


@contextlib.contextmanager
def starting_child() -> Iterator[None]:
    """Start a child process in the block: it is born with ``HANDLED`` blocked
    (it inherits this thread's signal mask). A signal that comes meanwhile is
    acted on when the block ends, not inside the start."""
    global _deferred, _pending, _first
    _deferred, _pending = True, None
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # one blocked here arrives now
        _deferred = False
        pending, _pending = _pending, None
        if pending is not None and _first is None:  # (it outranks an error in the start)
            _first = pending
            raise Interrupted(pending)


def ignore_in_child() -> None:
    """In a worker started by ``starting_child``: ignore ``HANDLED`` from now on
    (one that came while blocked is dropped)."""
    for signum in HANDLED:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
