"""The browser view of one session, started on demand (``--web`` at start, ``/web`` at the prompt)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from midstream.tools.questions import Questions
from midstream.tools.web.broadcast import Broadcast

__all__ = ["BrowserView"]


class BrowserView:
    """Starts the hub and the server once; ``open()`` is the line that tells the person where it is."""

    def __init__(self, broadcast: Broadcast, history: Callable[[], list[dict[str, Any]]], *,
                 stop: Callable[[], bool], questions: Questions | None, port: int = 0,
                 session: Callable[[], dict[str, Any]] = dict) -> None:
        self._broadcast, self._history, self._stop, self._questions = broadcast, history, stop, questions
        self._port, self._session = port, session
        self.server: Any = None

    def open(self) -> str:
        """Start serving (if not yet) and say where: one line with the URL and its secret token."""
        if self.server is None:
            from midstream.tools.web.hub import Hub
            from midstream.tools.web.server import WebServer
            from midstream.tools.web.view import View

            try:
                hub = Hub(View(self._history(), self._session()))
                self.server = WebServer(hub, stop=self._stop, questions=self._questions, port=self._port)
            except OSError as error:
                return f"midstream: cannot serve the browser view on 127.0.0.1:{self._port}: {error.strerror or error}"
            self._broadcast.add(hub.show)  # at start or at the prompt: no turn runs, no question is open
            self.server.start()
        return f"browser view: {self.server.url}  (only this session's token opens it)"

    def close(self) -> None:
        if self.server is not None:
            self._broadcast.remove(self.server.hub.show)
            self.server.close()
            self.server = None
