"""The hub: a renderer that numbers every record, keeps the page's state and fans records out to tabs.

``Hub.show`` runs on the loop's threads, under one lock, and never does I/O: it folds the event
into the ``View``, has the stream-json renderer (tools/ui/stream_json.py, the one vocabulary) turn
it into its lines, keeps each in a bounded replay log, and appends it to every subscriber's
bounded queue. A tab whose queue is full is cut off (its connection ends; the browser reconnects
and catches up from the replay log or a fresh snapshot), so a slow or gone tab never holds the
loop back.

Every record carries ``t``, milliseconds since the epoch when the hub saw it (the timeline needs
it); the SSE ``id:`` is its number. Page-only records (``Snapshot``, ``Rendered``,
``SessionUsage``, ``ToolPreview``, ``Note``) are numbered in the same sequence.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from midstream.tools.events import Event
from midstream.tools.ui.stream_json import StreamJsonRenderer
from midstream.tools.web.view import View

__all__ = ["Hub", "Subscriber"]

REPLAY_EVENTS = 20_000
REPLAY_BYTES = 16 * 1024 * 1024
QUEUE_FRAMES = 2_000


@dataclass
class Subscriber:
    """One tab's queue of SSE frames; ``cut`` once it fell too far behind (or the hub closed)."""

    limit: int = QUEUE_FRAMES
    frames: deque[bytes] = field(default_factory=deque)
    cut: bool = False
    _ready: threading.Condition = field(default_factory=threading.Condition)

    def put(self, frame: bytes) -> None:
        with self._ready:
            if len(self.frames) >= self.limit:
                self.cut = True
                self.frames.clear()
            elif not self.cut:
                self.frames.append(frame)
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self.cut = True
            self._ready.notify()

    def take(self, timeout: float) -> list[bytes] | None:
        """The frames waiting (empty after ``timeout`` with none); None once cut off."""
        with self._ready:
            if not self.frames and not self.cut:
                self._ready.wait(timeout)
            if self.cut:
                return None
            frames, self.frames = list(self.frames), deque()
            return frames


def frame(number: int, record: dict[str, Any]) -> bytes:
    """One SSE message: ``id:`` and one ``data:`` line (JSON never holds a raw newline)."""
    return f"id: {number}\ndata: {json.dumps(record, ensure_ascii=False, default=str)}\n\n".encode()


class Hub:
    """The browser view's renderer; ``subscribe`` gives a tab its start and its live queue."""

    def __init__(self, view: View | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.view = view or View()
        self._clock = clock
        self._lock = threading.Lock()
        self._lines = io.StringIO()  # where the stream-json renderer writes, emptied after each event
        session = self.view.session
        self._stream_json = StreamJsonRenderer(self._lines, model=str(session.get("model") or ""),
                                               session_id=str(session.get("session_id") or ""))
        self._number = 0
        self._log: deque[tuple[int, bytes]] = deque()
        self._log_bytes = 0
        self._subscribers: list[Subscriber] = []

    @property
    def last_id(self) -> int:
        return self._number

    def show(self, event: Event) -> None:
        with self._lock:
            at = self._clock() * 1000
            extra = self.view.apply(event, at)
            self._stream_json.show(event)
            stamp = f', "t": {at:.1f}}}'
            written = self._lines.getvalue()
            self._lines.seek(0)
            self._lines.truncate()
            for line in written.splitlines():  # each a JSON object: its closing brace gets the time before it
                if line.strip():
                    self._publish_data(line.rstrip()[:-1] + stamp)
            for record in extra:
                self._publish({**record, "t": at})

    def subscribe(self, last_id: int | None, limit: int = QUEUE_FRAMES) -> tuple[list[bytes], Subscriber]:
        """What a tab gets first (the records after ``last_id`` if the log still has them all, else a
        snapshot) and its queue for what follows; nothing is missed or sent twice in between."""
        subscriber = Subscriber(limit)
        with self._lock:
            oldest = self._log[0][0] if self._log else self._number + 1
            if last_id is not None and 0 <= last_id <= self._number and last_id + 1 >= oldest:
                start = [data for number, data in self._log if number > last_id]
            else:
                record = {"event": "Snapshot", **self.view.snapshot(), "t": self._clock() * 1000}
                start = [frame(self._number, record)]  # the snapshot stands for everything up to here
            self._subscribers.append(subscriber)
        return start, subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def close(self) -> None:
        with self._lock:
            for subscriber in self._subscribers:
                subscriber.close()
            self._subscribers.clear()

    def _publish(self, record: dict[str, Any]) -> None:
        self._publish_data(json.dumps(record, ensure_ascii=False, default=str))

    def _publish_data(self, line: str) -> None:
        self._number += 1
        data = f"id: {self._number}\ndata: {line}\n\n".encode()
        self._log.append((self._number, data))
        self._log_bytes += len(data)
        while len(self._log) > REPLAY_EVENTS or self._log_bytes > REPLAY_BYTES:
            self._log_bytes -= len(self._log.popleft()[1])
        for subscriber in self._subscribers:
            subscriber.put(data)
        self._subscribers = [s for s in self._subscribers if not s.cut]

