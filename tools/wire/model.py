"""The model boundary: one streaming POST /v1/messages, its SSE parsed into plain event dicts.

Everything after this module sees Anthropic-shaped stream events (``{"type": "message_start", …}``)
and our own errors, never HTTP details. ``tools/wire/openai.py`` subclasses the client for the
Chat Completions wire (its hooks: ``path``, ``_headers``, ``_wire_body``, ``_status_error``,
``_events``) and translates its chunks into the same events.

We speak HTTP through ``httpx2``, the stack the anthropic SDK itself runs on, and parse SSE with
our own byte-level splitter (``tools/wire/sse.py``: 0.35 s per MB of tool input with JSON decoding and
assembly, against 0.48 s through ``httpx2.EventSource``). The SDK's own streaming paths cost
2.4–12 s per MB of tool input and ``import anthropic`` ~1.8 s of start-up (see shared/DESIGN.md),
so the SDK is not on this path.

Errors, mapped once here::

    ModelError                     message, status, retry_after
    ├── RetryableModelError        worth the same request again
    │     connection refused/reset, dropped stream, stream ended without message_stop,
    │     idle timeout, HTTP 408/409/429/500/502/503/504/529, overloaded_error/api_error events
    └── FatalModelError            retrying cannot help
          │ HTTP 400 (the API's message), 401/403 (the key), 404 (the model), 413 (too large)
          └── PromptTooLong        the request does not fit the model's context window
                Anthropic "prompt is too long", OpenAI-compatible context_length_exceeded
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
from midstream.tools.wire.recording import Recorder
from midstream.tools.wire.sse import iter_sse

__all__ = [
    "FatalModelError", "ModelClient", "ModelError", "PromptTooLong", "RetryableModelError", "error_from_event",
]

log = logging.getLogger("midstream.model")

ANTHROPIC_VERSION = "2023-06-01"
RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}
_decode_json = json.JSONDecoder().decode  # json.loads minus its per-call type checks: ~60,000 calls per MB
RETRYABLE_ERROR_TYPES = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


class ModelError(Exception):
    """A request to the model service failed; ``str()`` is the line shown to the person."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetryableModelError(ModelError):
    retryable = True


class FatalModelError(ModelError):
    retryable = False


class PromptTooLong(FatalModelError):
    """The conversation no longer fits the model's context window: compact it, then retry once."""


def _retry_after(headers: httpx2.Headers) -> float | None:
    if ms := headers.get("retry-after-ms"):
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    if value := headers.get("retry-after"):
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time()) if when else None
    return None


def _api_message(body: bytes) -> tuple[str, str]:
    try:
        error = json.loads(body)["error"]
        return str(error.get("type", "error")), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "error", body[:300].decode("utf-8", "replace")


def _status_error(status: int, headers: httpx2.Headers, body: bytes) -> ModelError:
    kind, message = _api_message(body)
    retry_after = _retry_after(headers)
    if status == 400 and "prompt is too long" in message:
        return PromptTooLong(f"HTTP {status} {kind}: {message}", status=status)
    if status in RETRYABLE_STATUS:
        return RetryableModelError(f"HTTP {status} {kind}: {message}", status=status, retry_after=retry_after)
    hint = {
        401: "check ANTHROPIC_API_KEY (set it to a valid key for this service)",
        403: "the key in ANTHROPIC_API_KEY is not allowed to do this",
        404: "is the model name right? pass a current one with --model",
        413: "the conversation is too large for one request; start a new session or ask for less output",
    }.get(status)
    text = f"HTTP {status} {kind}: {message}" + (f" ({hint})" if hint else "")
    return FatalModelError(text, status=status)


def error_from_event(event: dict[str, Any]) -> ModelError:
    """An ``event: error`` inside a 200 stream."""
    error = event.get("error") or {}
    kind = str(error.get("type", "error"))
    text = f"stream error {kind}: {error.get('message', '')}"
    if kind in RETRYABLE_ERROR_TYPES:
        return RetryableModelError(text)
    return FatalModelError(text)


class ModelClient:
    """One HTTP client for the session; ``stream(body)`` yields the reply's events as dicts."""

    path = "/v1/messages"  # joined to the base URL

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        connect_timeout: float = 10.0,
        idle_timeout: float = 90.0,
        transport: httpx2.BaseTransport | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self._recorder = recorder
        self._socket: Any = None  # of the response being read, so abort() can wake its reader
        headers = self._headers(api_key)
        # The read timeout is the idle timeout: pings arrive every few seconds on a live stream,
        # so no byte for that long means a half-open connection that would otherwise hang for ever.
        timeout = httpx2.Timeout(connect=connect_timeout, read=idle_timeout, write=30.0, pool=connect_timeout)
        self._idle_timeout = idle_timeout
        self._client_settings: dict[str, Any] = dict(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        # Loading the CA bundle for TLS takes 25-60 ms: done on a thread while start-up goes on, and
        # not at all for a plain-http server (a local llama.cpp or Ollama).
        self._tls = _Background(httpx2.create_ssl_context) if base_url.startswith("https:") else None
        self._built: httpx2.Client | None = None

    def _headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION, "accept": "text/event-stream"}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def _wire_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The request as this wire wants it; history is kept in the Messages API's shape."""
        return body

    def _status_error(self, status: int, headers: httpx2.Headers, body: bytes) -> ModelError:
        return _status_error(status, headers, body)

    def _events(self, headers: httpx2.Headers, chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
        return _events(headers, chunks)

    @property
    def _http(self) -> httpx2.Client:
        if self._built is None:
            verify = self._tls.result() if self._tls is not None else False
            self._built = httpx2.Client(verify=verify, **self._client_settings)
        return self._built

    def close(self) -> None:
        if self._built is not None:
            self._built.close()

    @contextmanager
    def stream(self, body: dict[str, Any]) -> Iterator[Iterator[dict[str, Any]]]:
        body = self._wire_body(body)
        payload = json.dumps(body, separators=(",", ":")).encode()
        log.debug("request headers: %s", dict(self._http.headers))  # the log filter redacts the key
        started = time.monotonic()
        number = self._recorder.request(body) if self._recorder else 0
        answered = False
        try:
            with self._http.stream(
                "POST", self.path, content=payload, headers={"content-type": "application/json"}
            ) as response:
                answered = True
                self._socket = response.extensions.get("network_stream")
                request_id = response.headers.get("request-id") or response.headers.get("x-request-id", "-")
                log.info("POST %s model=%s bytes=%d -> HTTP %d request-id=%s in %.3f s",
                         self.path, body.get("model"), len(payload), response.status_code, request_id,
                         time.monotonic() - started)
                chunks = response.iter_bytes()
                if self._recorder:
                    self._recorder.response(number, response.status_code, dict(response.headers))
                    chunks = self._recorder.tee(number, chunks)
                if response.status_code != 200:
                    raise self._status_error(response.status_code, response.headers, b"".join(chunks))
                yield self._events(response.headers, chunks)
                log.info("request-id=%s stream closed after %.3f s", request_id, time.monotonic() - started)
        except httpx2.TransportError as exc:
            if self._recorder and not answered:
                self._recorder.failed(number, f"{type(exc).__name__}: {exc}")
            raise self._translate(exc) from exc

    def abort(self) -> None:
        """Shut down the socket being read: closing a response from another thread does not wake a
        thread blocked in recv(), but ``shutdown(SHUT_RDWR)`` does, in well under a millisecond."""
        stream = self._socket
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _translate(self, exc: httpx2.TransportError) -> RetryableModelError:
        if isinstance(exc, httpx2.ReadTimeout):
            return RetryableModelError(f"no data from the model service for {self._idle_timeout:g} s")
        if isinstance(exc, httpx2.ConnectError):
            return RetryableModelError(f"cannot connect to the model service: {exc}")
        # reset, dropped mid-stream, malformed chunking
        return RetryableModelError(f"connection to the model service broke: {exc or type(exc).__name__}")


class _Background:
    """Runs one function on a thread at once; ``result()`` waits for it (and re-raises its error)."""

    def __init__(self, function: Any) -> None:
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(function,), name="tls-setup", daemon=True)
        self._thread.start()

    def _run(self, function: Any) -> None:
        try:
            self._result = function()
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


def _events(headers: httpx2.Headers, chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    content_type = headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise RetryableModelError(f"expected an event stream from the model service, got {content_type!r}")
    for name, data in iter_sse(chunks):
        try:
            event = _decode_json(data.decode("utf-8"))
        except ValueError as exc:
            raise RetryableModelError(f"malformed event from the model service: {data[:120]!r}") from exc
        if isinstance(event, dict):
            event.setdefault("type", name)
            yield event
