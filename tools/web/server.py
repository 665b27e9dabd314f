"""The loopback HTTP server of the browser view: the page, one SSE stream, answers and stop.

Only the person gets in (``_refusal`` is the one place that decides):

- bound to 127.0.0.1 only;
- every request names ``Host: 127.0.0.1:PORT`` or ``localhost:PORT`` (else 403: DNS rebinding);
- every request carries the session's secret token (``?token=`` or the ``X-Midstream-Token``
  header), compared in constant time (else 403);
- a request that changes something (POST) carries the token in that custom header (a page of
  another origin cannot send one without a CORS preflight, which is never answered) and an
  ``Origin`` equal to this server's own (else 403);
- no CORS headers at all; a strict Content-Security-Policy (no remote images, scripts or styles:
  the model's Markdown cannot make the page fetch anything); nothing is framed; no referrer;
- the request line (which holds the token) is never logged.

Routes: ``GET /`` the page; ``GET /events`` the SSE stream (``Last-Event-ID`` replays);
``POST /api/answer`` ``{"question": id, "answer": "yes" | "no" | "always"}``; ``POST /api/stop``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from midstream.tools.questions import Questions
from midstream.tools.web.hub import Hub

__all__ = ["KEEP_ALIVE_SECONDS", "TOKEN_HEADER", "WebServer"]

log = logging.getLogger("midstream.web")

TOKEN_HEADER = "X-Midstream-Token"
KEEP_ALIVE_SECONDS = 15.0
MAX_BODY = 4096


def _page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy: its own inline script and styles, by hash, and nothing else."""
    html = resources.files("midstream.tools.web").joinpath("page.html").read_text("utf-8")

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in found)

    policy = (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
              "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html.encode(), policy


class WebServer:
    """Serves one session's view on 127.0.0.1; ``stop()`` interrupts the turn as Esc does."""

    def __init__(self, hub: Hub, *, stop: Callable[[], bool], questions: Questions | None,
                 port: int = 0, token: str | None = None, keep_alive: float = KEEP_ALIVE_SECONDS) -> None:
        self.hub = hub
        self.stop = stop
        self.questions = questions
        self.token = token or secrets.token_urlsafe(24)
        self.keep_alive = keep_alive
        self._page, self._policy = _page()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self.hosts = frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.1,), name="web-view", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.hub.close()  # every stream's thread ends
        self._httpd.shutdown()
        self._httpd.server_close()

    def token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


def _handler_for(web: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "midstream"
        sys_version = ""
        timeout = 60  # a tab that stops reading is dropped rather than holding its thread forever

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request line holds the token: never logged (log_request is quieted with it)

        def log_error(self, format: str, *args: Any) -> None:
            log.debug("web view: %s %s", self.command, urlsplit(self.path).path)

        # -- routes -------------------------------------------------------------------------------

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if refusal := self._refusal(url, changes=False):
                return self._send(*refusal)
            if url.path == "/":
                return self._send(200, web._page, "text/html; charset=utf-8")
            if url.path == "/events":
                return self._events(url)
            return self._send(404, b"not found\n")

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            if refusal := self._refusal(url, changes=True):
                return self._send(*refusal)
            body = self._json_body()
            if body is None:
                return self._send(400, b"a JSON object is expected\n")
            if url.path == "/api/stop":
                return self._reply({"stopped": web.stop()})
            if url.path == "/api/answer":
                question, answer = body.get("question"), body.get("answer")
                if web.questions is None or not isinstance(question, str) or not isinstance(answer, str):
                    return self._reply({"ok": False, "error": "no such question"}, 404)
                if web.questions.answer(question, answer, "browser"):
                    return self._reply({"ok": True})
                return self._reply({"ok": False, "error": "already answered, or not an answer"}, 409)
            return self._send(404, b"not found\n")

        def do_OPTIONS(self) -> None:  # a CORS preflight: never granted
            self._send(403, b"forbidden\n")

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS

        # -- the one gate -------------------------------------------------------------------------

        def _refusal(self, url: Any, *, changes: bool) -> tuple[int, bytes] | None:
            """Why this request may not be served (status, body), or None."""
            if self.client_address[0] != "127.0.0.1":
                return 403, b"forbidden\n"
            host = self.headers.get("Host", "")
            if host not in web.hosts:
                return 403, b"forbidden: unknown Host\n"
            header_token = self.headers.get(TOKEN_HEADER)
            query_token = (parse_qs(url.query).get("token") or [None])[0]
            if changes:
                if not web.token_ok(header_token):
                    return 403, b"forbidden: token header missing or wrong\n"
                if self.headers.get("Origin") != f"http://{host}":
                    return 403, b"forbidden: foreign Origin\n"
            elif not (web.token_ok(header_token) or web.token_ok(query_token)):
                return 403, b"forbidden: token missing or wrong\n"
            return None

        # -- the stream ---------------------------------------------------------------------------

        def _events(self, url: Any) -> None:
            last = self.headers.get("Last-Event-ID") or (parse_qs(url.query).get("last") or [None])[0]
            last_id = int(last) if last is not None and last.strip().isdigit() else None
            start, subscriber = web.hub.subscribe(last_id)
            try:
                self.send_response(200)
                self._common_headers("text/event-stream; charset=utf-8")
                self.end_headers()
                self.wfile.write(b"retry: 500\n\n" + b"".join(start))
                self.wfile.flush()
                while (frames := subscriber.take(web.keep_alive)) is not None:
                    self.wfile.write(b"".join(frames) if frames else b": keep-alive\n\n")
                    self.wfile.flush()
            except OSError:
                pass  # the tab went away: its thread ends here
            finally:
                web.hub.unsubscribe(subscriber)
                self.close_connection = True

        # -- plumbing -----------------------------------------------------------------------------

        def _json_body(self) -> dict[str, Any] | None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return None
            if length > MAX_BODY or length < 0:
                return None
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                return None
            return body if isinstance(body, dict) else None

        def _reply(self, payload: dict[str, Any], status: int = 200) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

        def _send(self, status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self._common_headers(kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _common_headers(self, kind: str) -> None:
            self.send_header("Content-Type", kind)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", web._policy)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("X-Frame-Options", "DENY")

    return Handler
