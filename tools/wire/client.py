"""The one HTTP client: a streaming POST per request, spoken in the dialect it holds.

A :class:`Dialect` is what differs between wires (tools/wire/anthropic.py for the Messages API,
tools/wire/openai.py for Chat Completions): the path, the headers, the body as that wire wants it,
how a non-200 answer reads as one of our errors (tools/wire/errors.py) and how the reply's bytes
become Anthropic-shaped stream events. Everything else (connections, time limits, the watchdog,
draining for keep-alive, recording) is here, once.

We speak HTTP through ``httpx2``, the stack the anthropic SDK itself runs on, and parse SSE with
our own byte-level splitter (``tools/wire/sse.py``: 0.35 s per MB of tool input with JSON decoding and
assembly, against 0.48 s through ``httpx2.EventSource``). The SDK's own streaming paths cost
2.4–12 s per MB of tool input and ``import anthropic`` ~1.8 s of start-up (see shared/DESIGN.md),
so the SDK is not on this path.

Bounded from the first byte: the watchdog shuts down the connection's socket at the request time
limit whether the request is being sent, its headers awaited or its body read (the socket is known
from the moment it connects, through httpcore's trace hook), and connecting itself is given no
more than that limit. A loopback base URL never goes through a proxy (HTTP_PROXY is for the way
out); a proxy that fails is named as the proxy. A kept-alive connection holding bytes past the
end of the last answer is discarded before the next request, never read as its answer.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
from midstream.tools.startup import LATER
from midstream.tools.wire.body import BodyEncoder
from midstream.tools.wire.errors import ModelError, RetryableModelError
from midstream.tools.wire.recording import Recorder

__all__ = ["Dialect", "ModelClient", "Reading", "Timeouts"]

log = logging.getLogger("midstream.model")

_DRAIN_LIMIT = 65536  # after the reply's end, read at most this much more to keep the connection reusable


@dataclass(frozen=True)
class Timeouts:
    """The time limits of one request, in seconds; they travel together."""

    connect: float = 10.0
    """To open a connection to the model service."""
    idle: float = 90.0
    """Without any byte (pings count) before the reply is treated as dropped."""
    request: float = 600.0
    """For the whole request, however its bytes trickle in."""
    write: float = 30.0
    """To send one piece of the body."""


class Reading:
    """The response's chunks; the dialect sets ``stopped`` when the reply's end went by (then the rest
    is drained, so the connection goes back to the pool)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.stopped = False

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks


class Dialect(Protocol):
    """What one wire says differently; the client holds one."""

    path: str
    """Joined to the base URL."""

    def headers(self) -> dict[str, str]:
        """Headers of every request, besides the key and the body's own."""
        ...

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The request as this wire wants it; history is kept in the Messages API's shape."""
        ...

    def error(self, status: int, headers: httpx2.Headers, body: bytes) -> ModelError:
        """A non-200 answer as one of our errors."""
        ...

    def events(self, headers: httpx2.Headers, reading: Reading) -> Iterator[dict[str, Any]]:
        """The reply's Anthropic-shaped events; sets ``reading.stopped`` at the reply's end."""
        ...


class ModelClient:
    """One HTTP client for the session; ``stream(body)`` yields the reply's events as dicts.

    One connection is kept and reused across requests: a stream is read to its end after
    ``message_stop`` (a few bytes), so the server's keep-alive connection goes back to the pool.
    Each request has an overall time limit (``timeouts.request``) besides the idle timeout: a
    watchdog shuts the socket down when it passes, however the bytes trickle in.
    """

    def __init__(
        self,
        dialect: Dialect,
        *,
        base_url: str,
        key_headers: dict[str, str] | None = None,
        timeouts: Timeouts = Timeouts(),
        transport: httpx2.BaseTransport | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.dialect = dialect
        self.path = dialect.path
        self._recorder = recorder
        self._socket: Any = None  # of the response being read, so abort() can wake its reader
        self._timeouts = timeouts
        self._expired = False
        self._encoder = BodyEncoder()
        # The read timeout is the idle timeout: pings arrive every few seconds on a live stream,
        # so no byte for that long means a half-open connection that would otherwise hang for ever.
        timeout = httpx2.Timeout(connect=timeouts.connect, read=timeouts.idle, write=timeouts.write,
                                 pool=timeouts.connect)
        self._client_settings: dict[str, Any] = dict(
            base_url=base_url.rstrip("/"), headers=dialect.headers() | (key_headers or {}), timeout=timeout,
            transport=transport,
        )
        loopback = _is_loopback(base_url)
        self._client_settings["trust_env"] = not loopback  # the environment's proxies are for the way out
        self._proxy = None if loopback else _proxy_for(base_url)
        self._connection_stream: Any = None  # the pool's one connection, from the moment it connects
        # Building the client imports httpcore and h11 (~90 ms) and, for https, loads the CA bundle
        # (25-60 ms): done on a thread while start-up goes on (git, the transcript's fsync).
        self._building = _Background(self._build)
        self._built: httpx2.Client | None = None

    def _build(self) -> httpx2.Client:
        verify = httpx2.create_ssl_context() if self._client_settings["base_url"].startswith("https:") else False
        limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
        return httpx2.Client(verify=verify, limits=limits, **self._client_settings)

    @property
    def _http(self) -> httpx2.Client:
        if self._built is None:
            self._built = self._building.result()
        return self._built

    def close(self) -> None:
        if self._built is None and not self._building.done():
            return  # never used, still being built: nothing is open yet
        with contextlib.suppress(Exception):  # a client that failed to build has nothing to close
            self._http.close()

    @contextmanager
    def stream(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> Iterator[Iterator[dict[str, Any]]]:
        """One streaming request; ``headers`` are this request's own (a trace's ``traceparent``)."""
        _discard_stray_bytes(self._http)
        body = self.dialect.body(body)
        parts = self._encoder.parts(body)  # written one after the other: the body is never joined
        size = sum(map(len, parts))
        log.debug("request headers: %s", dict(self._http.headers))  # the log filter redacts the key
        started = time.monotonic()
        number = self._recorder.request(body) if self._recorder else 0
        answered = False
        self._expired = False
        watchdog = threading.Timer(self._timeouts.request, self._expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            with self._http.stream(
                "POST", self.path, content=_written(parts),
                headers={**(headers or {}), "content-type": "application/json", "content-length": str(size)},
                timeout=self._timeout, extensions={"trace": self._trace},
            ) as response:
                answered = True
                self._socket = response.extensions.get("network_stream")
                if self._expired:  # the limit passed before the answer: nothing was there to shut down
                    raise self._timed_out()
                request_id = response.headers.get("request-id") or response.headers.get("x-request-id", "-")
                log.info("POST %s model=%s bytes=%d -> HTTP %d request-id=%s in %.3f s",
                         self.path, body.get("model"), size, response.status_code, request_id,
                         time.monotonic() - started)
                chunks = response.iter_bytes()
                if self._recorder:
                    self._recorder.response(number, response.status_code, dict(response.headers))
                    chunks = self._recorder.tee(number, chunks)
                if response.status_code != 200:
                    raise self.dialect.error(response.status_code, response.headers, b"".join(chunks))
                reading = Reading(chunks)
                yield self.dialect.events(response.headers, reading)
                if reading.stopped:
                    _drain(chunks)
                log.info("request-id=%s stream closed after %.3f s", request_id, time.monotonic() - started)
        except (httpx2.HTTPError, httpx2.StreamError) as exc:
            if self._recorder and not answered:
                self._recorder.failed(number, f"{type(exc).__name__}: {exc}")
            if self._expired:
                raise self._timed_out() from exc
            raise self._translate(exc) from exc
        except RetryableModelError:
            if self._expired:
                raise self._timed_out() from None
            raise
        finally:
            watchdog.cancel()
            self._socket = None

    @property
    def _timeout(self) -> httpx2.Timeout:
        limits = self._timeouts
        connect = min(limits.connect, limits.request)  # the watchdog has no socket to shut while connecting
        return httpx2.Timeout(connect=connect, read=limits.idle, write=limits.write, pool=connect)

    def _trace(self, name: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: the socket of a new connection (to the service or the proxy)."""
        if name.endswith(("connect_tcp.complete", "start_tls.complete")):
            self._connection_stream = info.get("return_value")

    def _expire(self) -> None:
        self._expired = True
        self.abort()

    def _timed_out(self) -> RetryableModelError:
        return RetryableModelError(f"the reply took longer than the request time limit "
                                   f"({self._timeouts.request:g} s, --request-timeout)")

    def abort(self) -> None:
        """Shut down the socket being read: closing a response from another thread does not wake a
        thread blocked in recv(), but ``shutdown(SHUT_RDWR)`` does, in well under a millisecond."""
        stream = self._socket or self._connection_stream
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _translate(self, exc: httpx2.HTTPError | httpx2.StreamError) -> RetryableModelError:
        if isinstance(exc, httpx2.ReadTimeout):
            return RetryableModelError(f"no data from the model service for {self._timeouts.idle:g} s")
        url = self._client_settings["base_url"]
        if self._proxy and isinstance(exc, httpx2.ConnectError | httpx2.ProxyError | httpx2.ConnectTimeout):
            return RetryableModelError(f"the proxy {self._proxy} (from the environment's proxy variables) failed "
                                       f"on the way to {url}: {exc or type(exc).__name__}; fix or unset it, or "
                                       "add the host to NO_PROXY")
        if isinstance(exc, httpx2.ConnectError):
            return RetryableModelError(f"cannot connect to the model service at {url}: {exc}")
        if isinstance(exc, httpx2.DecodingError):
            return RetryableModelError(f"the model service sent a body that cannot be decoded: {exc}")
        # reset, dropped mid-stream, malformed chunking
        return RetryableModelError(f"connection to the model service broke: {exc or type(exc).__name__}")


def _is_loopback(url: str) -> bool:
    host = httpx2.URL(url).host
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _proxy_for(url: str) -> str | None:
    """The proxy the environment sends ``url`` through, as httpx reads it (``*_PROXY``, ``NO_PROXY``)."""
    proxies = urllib.request.getproxies_environment()
    parsed = httpx2.URL(url)
    if urllib.request.proxy_bypass_environment(parsed.host, proxies):  # type: ignore[attr-defined]
        return None
    return proxies.get(parsed.scheme) or proxies.get("all")


def _discard_stray_bytes(client: httpx2.Client) -> None:
    """httpcore reuses an idle connection unless its socket is readable; but bytes a server sent past
    the end of its last answer may already sit in h11's buffer, and would be read as the next
    answer. Such a connection is closed (the pool then opens a fresh one). Reaches into httpcore's
    objects, each step checked: if they change, connections are simply reused as before."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    for connection in getattr(pool, "connections", ()):
        state = getattr(getattr(connection, "_connection", None), "_h11_state", None)
        trailing = getattr(state, "trailing_data", (b"", False))
        if connection.is_idle() and (trailing[0] or trailing[1]):
            log.warning("discarding a kept-alive connection holding %d bytes past the last answer", len(trailing[0]))
            connection.close()


def _drain(chunks: Iterator[bytes]) -> None:
    """Read what follows the reply's end (normally just the end of the chunked body), so the
    connection can serve the next request; a server that keeps talking loses its connection."""
    left = _DRAIN_LIMIT
    for chunk in chunks:
        left -= len(chunk)
        if left < 0:
            return


def _written(parts: list[bytes]) -> Iterator[bytes]:
    """The body's parts for the socket; once they are all written, start-up's deferred work may run."""
    yield from parts
    LATER.release()  # the model now thinks for a while: the GIL is free for the log writer, undo, ...


class _Background:
    """Runs one function on a thread at once; ``result()`` waits for it (and re-raises its error)."""

    def __init__(self, function: Any) -> None:
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(function,), name="client-setup", daemon=True)
        self._thread.start()

    def _run(self, function: Any) -> None:
        try:
            self._result = function()
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result
