"""Run tool calls on a thread pool as soon as they arrive, in parallel where they do not conflict.

A call starts at once unless it conflicts (see ``Access.conflicts_with``) with an earlier call
that has not finished; conflicting calls keep the order in which the model emitted them. A
failing call never cancels its siblings: each call's outcome is its own future.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from midstream.tools.registry import Access, ToolResult

__all__ = ["ScheduledCall", "Scheduler"]


@dataclass
class ScheduledCall:
    """One call as the scheduler sees it: an id, what it touches, and how to run it."""

    id: str
    access: Access
    run: Callable[[], ToolResult]
    future: Future[ToolResult] = field(default_factory=Future)
    started: bool = False


class Scheduler:
    """Starts each submitted call when no earlier unfinished call conflicts with it."""

    def __init__(self, workers: int = 8) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tool")
        self._lock = threading.Lock()
        self._unfinished: list[ScheduledCall] = []  # in emission order

    def submit(self, call: ScheduledCall) -> Future[ToolResult]:
        with self._lock:
            self._unfinished.append(call)
            self._start_ready()
        return call.future

    def cancel_waiting(self, result: ToolResult) -> list[str]:
        """Give every call that has not started yet ``result`` instead of running it; their ids."""
        with self._lock:
            waiting = [c for c in self._unfinished if not c.started]
            for call in waiting:
                self._unfinished.remove(call)
        for call in waiting:
            call.future.set_result(result)
        return [call.id for call in waiting]

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)

    def _start_ready(self) -> None:
        # Called with the lock held. Quadratic in the number of unfinished calls, which is small.
        for index, call in enumerate(self._unfinished):
            if call.started:
                continue
            if any(earlier.access.conflicts_with(call.access) for earlier in self._unfinished[:index]):
                continue
            call.started = True
            self._executor.submit(self._run, call)

    def _run(self, call: ScheduledCall) -> None:
        try:
            result = call.run()
        except BaseException as exc:  # run() already turns failures into results; this is the backstop
            result = ToolResult(f"internal error while running the tool: {exc!r}", is_error=True)
        with self._lock:
            self._unfinished.remove(call)
            self._start_ready()
        call.future.set_result(result)
