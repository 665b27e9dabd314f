"""The model boundary: one streaming POST /v1/messages, its SSE parsed into plain event dicts.

Everything after this module sees Anthropic-shaped stream events (``{"type": "message_start", …}``)
and our own errors, never HTTP details. ``tools/wire/openai.py`` subclasses the client for the
Chat Completions wire (its hooks: ``path``, ``_headers``, ``_wire_body``, ``_status_error``,
``_events``) and translates its chunks into the same events, which pass the same EventShapes check.

We speak HTTP through ``httpx2``, the stack the anthropic SDK itself runs on, and parse SSE with
our own byte-level splitter (``tools/wire/sse.py``: 0.35 s per MB of tool input with JSON decoding and
assembly, against 0.48 s through ``httpx2.EventSource``). The SDK's own streaming paths cost
2.4–12 s per MB of tool input and ``import anthropic`` ~1.8 s of start-up (see shared/DESIGN.md),
so the SDK is not on this path.

Errors, mapped once here::

    ModelError                     message, status, retry_after
    ├── RetryableModelError        worth the same request again
    │     connection refused/reset, dropped stream, stream ended without message_stop,
    │     idle timeout, the request's overall time limit, a body that cannot be decoded,
    │     HTTP 408/409/429/500/502/503/504/529, overloaded_error/api_error events
    │     └── MalformedStream (tools/wire/shapes.py)   an event the API would never send
    └── FatalModelError            retrying cannot help
          │ HTTP 400 (the API's message), 401/403 (the key), 404 (the model), 413 (too large)
          └── PromptTooLong        the conversation does not fit the model's context window:
                HTTP 400 invalid_request_error "prompt is too long: N tokens > L maximum" (or
                "… exceed context limit …"); OpenAI-compatible context_length_exceeded, llama.cpp's
                exceed_context_size_error, vLLM's "maximum context length"; the loop compacts it
                and retries once
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import hashlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
from midstream.tools.wire.body import BodyEncoder
from midstream.tools.wire.recording import Recorder
from midstream.tools.wire.sse import iter_sse

__all__ = [
    "FatalModelError", "ModelClient", "ModelError", "PromptTooLong", "RetryableModelError", "error_from_event",
    "prompt_too_long", "retry_after",
]

log = logging.getLogger("midstream.model")

ANTHROPIC_VERSION = "2023-06-01"
RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}
_decode_json = json.JSONDecoder().decode  # json.loads minus its per-call type checks: ~60,000 calls per MB
RETRYABLE_ERROR_TYPES = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}
_DRAIN_LIMIT = 65536  # after message_stop, read at most this much more to keep the connection reusable


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


def _seconds(value: str, scale: float = 1.0) -> float | None:
    try:
        seconds = float(value) / scale
    except ValueError:
        return None
    return None if seconds != seconds else max(0.0, seconds)  # NaN is garbage; inf is a (huge) wait


def retry_after(headers: httpx2.Headers | dict[str, str]) -> float | None:
    """The wait the service asked for: ``retry-after-ms``, or ``retry-after`` as seconds or an
    HTTP date. Garbage is ignored (None); a huge value is returned as it is, for the caller to cap."""
    if (ms := headers.get("retry-after-ms")) and (seconds := _seconds(ms.strip(), 1000)) is not None:
        return seconds
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    if (seconds := _seconds(value)) is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate gives a naive datetime for "-0000"
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - time.time())


class PromptTooLong(FatalModelError):
    """The request does not fit the context window; ``tokens`` and ``limit`` when the service said."""

    def __init__(self, message: str, *, status: int | None = 400, tokens: int | None = None,
                 limit: int | None = None) -> None:
        super().__init__(message, status=status)
        self.tokens = tokens
        self.limit = limit


_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")


def _for_messages_wire(body: dict[str, Any]) -> dict[str, Any]:
    """The body as the Messages API accepts a history made (in part) on an OpenAI-compatible server,
    for a session continued on this wire: thinking without a signature (reasoning_content) is left
    out, since the API refuses a thinking block it did not sign, and a message left empty with it
    (the API joins adjacent turns); a tool call id outside ``[a-zA-Z0-9_-]+`` (Kimi's
    ``functions.read_file:0``) is sent as the same legal id at its call and at its result."""
    def unsigned(block: Any) -> bool:
        return isinstance(block, dict) and block.get("type") == "thinking" and not block.get("signature")

    def foreign(block: Any) -> bool:
        return (isinstance(block, dict) and (unsigned(block) or any(
            isinstance(block.get(k), str) and not _TOOL_ID.fullmatch(block[k]) for k in ("id", "tool_use_id"))))

    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    kept, changed = [], False
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), list) and any(
                map(foreign, message["content"])):
            # Only these are rebuilt: the others stay the same objects, so the body encoder reuses them.
            changed = True
            content = [_legal_ids(b) for b in message["content"] if not unsigned(b)]
            if not content:
                continue
            message = {**message, "content": content}
        kept.append(message)
    return {**body, "messages": kept} if changed else body


def _legal_ids(block: Any) -> Any:
    if not isinstance(block, dict):
        return block
    for key in ("id", "tool_use_id"):
        if isinstance(value := block.get(key), str) and not _TOOL_ID.fullmatch(value):
            digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
            block = {**block, key: f"{re.sub(r'[^a-zA-Z0-9_-]', '_', value)[:40]}_{digest}"}
    return block


# Anthropic: "prompt is too long: 208310 tokens > 200000 maximum", and for prompt + max_tokens over
# the window "input length and `max_tokens` exceed context limit: 197202 + 16000 > 200000, …".
# OpenAI-compatible servers: the codes context_length_exceeded (OpenAI), exceed_context_size_error
# (llama.cpp: "the request exceeds the available context size"), context_window_exceeded, and vLLM's
# "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens".
_TOO_LONG = re.compile(r"prompt is too long|exceed(?:s|ed)? (?:the )?context (?:limit|window)|maximum context length"
                       r"|context_length_exceeded|exceed_context_size_error|context_window_exceeded"
                       r"|context (?:length|size|window)[^.]{0,60}exceed|exceeds? the (?:available )?context",
                       re.IGNORECASE)
# OpenAI-compatible: "maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens"
_OPENAI_NUMBERS = re.compile(r"maximum context length is (\d+) tokens.*?(?:resulted in|requested) (\d+) tokens",
                             re.DOTALL)
_TOO_LONG_NUMBERS = re.compile(r"(\d+)(?: \+ (\d+))?(?: tokens)? > (\d+)")


def prompt_too_long(text: str, shown: str | None = None) -> PromptTooLong | None:
    """The error for an API message that says the prompt does not fit (shown as ``shown``), else None."""
    if not _TOO_LONG.search(text):
        return None
    numbers = _TOO_LONG_NUMBERS.search(text)
    tokens = limit = None
    if numbers:
        tokens, limit = int(numbers.group(1)) + int(numbers.group(2) or 0), int(numbers.group(3))
    elif openai := _OPENAI_NUMBERS.search(text):
        limit, tokens = int(openai.group(1)), int(openai.group(2))
    return PromptTooLong(shown or text, tokens=tokens, limit=limit)


def _api_message(body: bytes) -> tuple[str, str]:
    try:
        error = json.loads(body)["error"]
        return str(error.get("type", "error")), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "error", body[:300].decode("utf-8", "replace")


def _status_error(status: int, headers: httpx2.Headers, body: bytes) -> ModelError:
    kind, message = _api_message(body)
    wait = retry_after(headers)
    too_long = prompt_too_long(message, f"HTTP 400 {kind}: {message}") if kind == "invalid_request_error" else None
    if status == 400 and too_long is not None:
        return too_long
    if status in RETRYABLE_STATUS:
        return RetryableModelError(f"HTTP {status} {kind}: {message}", status=status, retry_after=wait)
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
    """One HTTP client for the session; ``stream(body)`` yields the reply's events as dicts.

    One connection is kept and reused across requests: a stream is read to its end after
    ``message_stop`` (a few bytes), so the server's keep-alive connection goes back to the pool.
    Each request has an overall time limit (``request_timeout``) besides the idle timeout: a
    watchdog shuts the socket down when it passes, however the bytes trickle in.
    """

    path = "/v1/messages"  # joined to the base URL

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        connect_timeout: float = 10.0,
        idle_timeout: float = 90.0,
        request_timeout: float = 600.0,
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
        self._request_timeout = request_timeout
        self._expired = False
        self._encoder = BodyEncoder()
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
        return _for_messages_wire(body)

    def _status_error(self, status: int, headers: httpx2.Headers, body: bytes) -> ModelError:
        return _status_error(status, headers, body)

    def _events(self, headers: httpx2.Headers, reading: _Reading) -> Iterator[dict[str, Any]]:
        """The reply's events; ``reading.stopped`` is set when the reply's end went by."""
        return _events(headers, reading)

    @property
    def _http(self) -> httpx2.Client:
        if self._built is None:
            verify = self._tls.result() if self._tls is not None else False
            limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
            self._built = httpx2.Client(verify=verify, limits=limits, **self._client_settings)
        return self._built

    def close(self) -> None:
        if self._built is not None:
            self._built.close()

    @contextmanager
    def stream(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> Iterator[Iterator[dict[str, Any]]]:
        """One streaming request; ``headers`` are this request's own (a trace's ``traceparent``)."""
        body = self._wire_body(body)
        parts = self._encoder.parts(body)  # written one after the other: the body is never joined
        size = sum(map(len, parts))
        log.debug("request headers: %s", dict(self._http.headers))  # the log filter redacts the key
        started = time.monotonic()
        number = self._recorder.request(body) if self._recorder else 0
        answered = False
        self._expired = False
        watchdog = threading.Timer(self._request_timeout, self._expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            with self._http.stream(
                "POST", self.path, content=iter(parts),
                headers={**(headers or {}), "content-type": "application/json", "content-length": str(size)},
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
                    raise self._status_error(response.status_code, response.headers, b"".join(chunks))
                reading = _Reading(chunks)
                yield self._events(response.headers, reading)
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

    def _expire(self) -> None:
        self._expired = True
        self.abort()

    def _timed_out(self) -> RetryableModelError:
        return RetryableModelError(f"the reply took longer than the request time limit "
                                   f"({self._request_timeout:g} s, --request-timeout)")

    def abort(self) -> None:
        """Shut down the socket being read: closing a response from another thread does not wake a
        thread blocked in recv(), but ``shutdown(SHUT_RDWR)`` does, in well under a millisecond."""
        stream = self._socket
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _translate(self, exc: httpx2.HTTPError | httpx2.StreamError) -> RetryableModelError:
        if isinstance(exc, httpx2.ReadTimeout):
            return RetryableModelError(f"no data from the model service for {self._idle_timeout:g} s")
        if isinstance(exc, httpx2.ConnectError):
            url = self._client_settings["base_url"]
            return RetryableModelError(f"cannot connect to the model service at {url}: {exc}")
        if isinstance(exc, httpx2.DecodingError):
            return RetryableModelError(f"the model service sent a body that cannot be decoded: {exc}")
        # reset, dropped mid-stream, malformed chunking
        return RetryableModelError(f"connection to the model service broke: {exc or type(exc).__name__}")


class _Reading:
    """The response's chunks, noting whether ``message_stop`` went by (then the rest is drained)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.stopped = False

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks


def _drain(chunks: Iterator[bytes]) -> None:
    """Read what follows message_stop (normally just the end of the chunked body), so the
    connection can serve the next request; a server that keeps talking loses its connection."""
    left = _DRAIN_LIMIT
    for chunk in chunks:
        left -= len(chunk)
        if left < 0:
            return


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


def _events(headers: httpx2.Headers, reading: _Reading) -> Iterator[dict[str, Any]]:
    content_type = headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise RetryableModelError(f"expected an event stream from the model service, got {content_type!r}")
    for name, data in iter_sse(reading.chunks):
        try:
            event = _decode_json(data.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError included
            raise RetryableModelError(f"malformed event from the model service: {data[:120]!r}") from exc
        if not isinstance(event, dict):
            raise RetryableModelError(f"malformed event from the model service (not an object): {data[:120]!r}")
        event.setdefault("type", name)
        if event["type"] == "message_stop":
            reading.stopped = True
        yield event
