"""A loopback HTTP/1.1 server whose every byte the test writes: slow headers, stray bytes, bad frames.

``RawServer(answer)`` listens on 127.0.0.1; for each request it reads the request line, headers and
body (Content-Length), records them in ``requests`` (with the monotonic time the request's first
byte arrived and the time its answer was written), then calls ``answer(request, connection)``,
which writes whatever it likes with ``connection.send``. The connection is kept for the next
request unless ``answer`` returns ``"close"``. Helpers build the usual answers:
``sse(events)`` a Messages reply, ``chat(chunks)`` a Chat Completions reply, ``http(status, body)``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Connection", "RawRequest", "RawServer", "Script", "chat", "http", "reply_bytes", "sse", "stream"]


@dataclass
class RawRequest:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the JSON body, decoded (None when it is not JSON)
    raw: bytes
    arrived: float  # time.monotonic() of its first byte
    answered: float = 0.0  # ...and when its answer was written in full


class Connection:
    """The client's socket, for ``answer`` to write to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def trickle(self, data: bytes, every: float) -> None:
        """One byte at a time, ``every`` seconds apart (headers that never finish arriving)."""
        for byte in data:
            self.sock.sendall(bytes([byte]))
            time.sleep(every)


def http(status: int, body: bytes, content_type: str = "application/json", extra: str = "") -> bytes:
    """A whole response with a Content-Length."""
    return (f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


def sse(events: Iterable[dict[str, Any]]) -> bytes:
    """A Messages API reply: ``event:``/``data:`` pairs."""
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def chat(chunks: Iterable[dict[str, Any] | str], done: bool = True) -> bytes:
    """A Chat Completions reply: ``data:`` lines (a str is sent as it is), then ``[DONE]``."""
    out = b"".join(b"data: " + (c.encode() if isinstance(c, str) else json.dumps(c).encode()) + b"\n\n"
                   for c in chunks)
    return out + (b"data: [DONE]\n\n" if done else b"")


def stream(body: bytes) -> bytes:
    """``body`` as a whole event-stream response (Content-Length framed)."""
    return http(200, body, "text/event-stream")


class RawServer:
    """Answers each request with ``answer(request, connection)``; see the module docstring."""

    def __init__(self, answer: Callable[[RawRequest, Connection], str | None]) -> None:
        self.answer = answer
        self.requests: list[RawRequest] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> RawServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped = True
        self._listener.close()
        for sock in self._open:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        buffer = b""
        connection = Connection(sock)
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if not buffer:
                        arrived = time.monotonic()
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                length = int(headers.get("content-length", "0") or 0)
                while len(buffer) < length:
                    data = sock.recv(max(65536, length - len(buffer)))
                    if not data:
                        return
                    buffer += data
                raw, buffer = buffer[:length], buffer[length:]
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                request = RawRequest(method, path, headers, body, raw, arrived)
                self.requests.append(request)
                verdict = self.answer(request, connection)
                request.answered = time.monotonic()
                if verdict == "close":
                    return
                if buffer:
                    arrived = time.monotonic()
        except OSError:
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass


@dataclass
class Script:
    """Answers in turn (one per request), then ``then`` for every request after them."""

    answers: list[bytes | Callable[[RawRequest, Connection], str | None]]
    then: Callable[[RawRequest, Connection], str | None] | None = None
    served: int = field(default=0)

    def __call__(self, request: RawRequest, connection: Connection) -> str | None:
        if self.served < len(self.answers):
            answer = self.answers[self.served]
            self.served += 1
        elif self.then is not None:
            answer = self.then
        else:
            connection.send(http(500, b'{"type":"error","error":{"type":"api_error","message":"script ran out"}}'))
            return "close"
        if callable(answer):
            return answer(request, connection)
        connection.send(answer)
        return None


def reply_bytes(provider: str, events: list[dict[str, Any]]) -> bytes:
    """A whole 200 answer carrying Messages ``events`` on ``provider``'s wire."""
    if provider == "openai":
        from midstream.tools.testing.scripted_chat import render_chat

        return stream(render_chat(events))
    return stream(sse(events))
