"""A signal's exception (SIGTERM's and SIGHUP's SystemExit, Ctrl-C's KeyboardInterrupt) is never raised
in the moment the main thread is starting a child process.

A signal's handler raises at the next bytecode of the main thread. Raised inside ``subprocess.Popen``
after the fork, it leaves a child that nobody holds and so nobody kills: a hook started just before
the session was told to stop outlived it (about one run in five, in a test). While the main thread
starts a child, ``leave()`` waits; the exception is raised when the start is over, where the caller's
handler can kill what it started. Other threads' children are stopped by close() (ToolContext.on_kill).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["exit_on_signal", "leave", "starting_child"]

_starting = [0]  # how deep the main thread is in starting_child()
_deferred: list[BaseException] = []  # what a signal raised meanwhile


def exit_on_signal(signum: int, frame: object) -> None:
    """SIGTERM and SIGHUP unwind like an exit, so the agent's close() stops its tools and hooks."""
    leave(SystemExit(128 + signum))


def leave(exception: BaseException) -> None:
    """From a signal handler: raise ``exception`` now or, while the main thread starts a child, once it has."""
    if _starting[0]:
        _deferred.append(exception)
        return
    raise exception


@contextmanager
def starting_child() -> Iterator[None]:
    """Around ``Popen`` in code the main thread may run: what a signal raised meanwhile (the first of them)
    is raised when the block ends, the process assigned by then. Elsewhere, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _starting[0] += 1
    try:
        yield
    finally:
        _starting[0] -= 1
    if not _starting[0] and _deferred:
        first = _deferred[0]
        _deferred.clear()
        raise first
