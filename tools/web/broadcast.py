"""The agent's renderer when a browser view may join: the person's renderer first, then listeners."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from midstream.tools.events import Event, Renderer

__all__ = ["Broadcast"]

log = logging.getLogger("midstream.web")


class Broadcast:
    """Shows every event on ``primary``, then hands it to each listener (the hub, the questions)."""

    def __init__(self, primary: Renderer) -> None:
        self.primary = primary
        self._listeners: tuple[Callable[[Event], None], ...] = ()
        self._lock = threading.Lock()

    def add(self, listener: Callable[[Event], None]) -> None:
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove(self, listener: Callable[[Event], None]) -> None:
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x != listener)

    def show(self, event: Event) -> None:
        self.primary.show(event)
        for listener in self._listeners:  # a tuple, replaced whole: safe to read without the lock
            try:
                listener(event)
            except Exception:  # a fault in a view must not stop the turn; the terminal still has it all
                log.exception("a listener failed on %s", type(event).__name__)

    def say(self, text: str, style: str = "") -> None:
        self.primary.say(text, style)

    def suspended(self) -> contextlib.AbstractContextManager[None]:
        return self.primary.suspended()

    def close(self) -> None:
        self.primary.close()
