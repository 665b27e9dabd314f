"""Start-up work that can wait until the first request is on its way.

Python runs one thread at a time, so a helper thread importing the log handler (~30 ms), deciding how
undo works (git) or walking the workspace for stale temporaries takes those milliseconds from the main
thread on its way to the first request. Work queued here starts when the first request's body has been
written (the model then takes hundreds of milliseconds to answer) or when a person's prompt is shown,
whichever comes first. If neither happens, ``Job.wait()`` starts the one job waited for (the log
writer, at exit: nothing logged is lost) and ``Job.cancel()`` drops one whose news no longer matters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["LATER", "Job", "Later"]

log = logging.getLogger("midstream.startup")


class Job:
    """One piece of deferred work on its own daemon thread; its error is logged, never raised."""

    def __init__(self, name: str, work: Callable[[], object], later: Later) -> None:
        self.name = name
        self._later = later
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)

    def _run(self, work: Callable[[], object]) -> None:
        try:
            work()
        except Exception:
            log.exception("start-up work %r failed", self.name)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Until the work is done: started now, alone, if the first request never went out."""
        self._later.take(self, start=True)
        if self._thread.ident is not None:  # else cancelled: it never runs
            self._thread.join(timeout)

    def cancel(self) -> None:
        """Never run, if it has not started (what it would tell no longer matters)."""
        self._later.take(self, start=False)


class Later:
    """Holds jobs until ``release()``; after it, a job starts at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: list[Job] = []
        self._released = False

    def run(self, name: str, work: Callable[[], object]) -> Job:
        job = Job(name, work, self)
        with self._lock:
            if not self._released:
                self._held.append(job)
                return job
        job.start()
        return job

    def take(self, job: Job, *, start: bool) -> None:
        """``job`` out of the held ones, started or dropped; nothing if it was not held."""
        with self._lock:
            if job in self._held:
                self._held.remove(job)
                if start:
                    job.start()

    def release(self) -> None:
        """Start everything held (once; later calls cost a lock)."""
        with self._lock:  # started under the lock: a job waited for is never seen half-released
            held, self._held, self._released = self._held, [], True
            for job in held:
                job.start()


LATER = Later()  # the process's one start-up: released by the first request written, or by the prompt
