"""SIGTERM and SIGHUP end the session by unwinding (so close() stops every tool and hook), except in
the moment the main thread is starting a child process.

A signal's handler raises at the next bytecode of the main thread. Raised inside ``subprocess.Popen``
after the fork, it leaves a child that nobody holds and so nobody kills: a hook started just before
the session was told to stop outlived it (about one run in five, in a test). While the main thread
starts a child, the exit waits; it is raised when the start is over, where the caller's handler can
kill what it started. Other threads' children are stopped by close() (ToolContext.on_kill).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["exit_on_signal", "starting_child"]

_starting = [0]  # how deep the main thread is in starting_child()
_deferred: list[int] = []  # the exit status a signal asked for meanwhile


def exit_on_signal(signum: int, frame: object) -> None:
    if _starting[0]:
        _deferred.append(128 + signum)
        return
    raise SystemExit(128 + signum)


@contextmanager
def starting_child() -> Iterator[None]:
    """Around ``Popen`` in code the main thread may run: a SIGTERM or SIGHUP meanwhile is raised as
    SystemExit when the block ends (the process is assigned by then). Elsewhere, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _starting[0] += 1
    try:
        yield
    finally:
        _starting[0] -= 1
    if not _starting[0] and _deferred:
        raise SystemExit(_deferred.pop())
