"""The Messages API dialect: ``POST /v1/messages``, its SSE parsed into plain event dicts.

The client (tools/wire/client.py) holds it. Its events are the Messages API's own
(``{"type": "message_start", …}``), which every later step speaks; its errors are mapped onto
tools/wire/errors.py's hierarchy here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx2
from midstream.tools.wire.client import Reading
from midstream.tools.wire.errors import (
    RETRYABLE_STATUS,
    TOO_LONG_STATUS,
    FatalModelError,
    ModelError,
    RetryableModelError,
    prompt_too_long,
    retry_after,
)
from midstream.tools.wire.sse import iter_sse

if TYPE_CHECKING:
    from midstream.tools.wire.providers import Provider

__all__ = ["ANTHROPIC_VERSION", "MessagesDialect"]

ANTHROPIC_VERSION = "2023-06-01"
_decode_json = json.JSONDecoder().decode  # json.loads minus its per-call type checks: ~60,000 calls per MB
_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")


class MessagesDialect:
    """The Messages API: its path, headers, body, errors and events."""

    path = "/v1/messages"

    def __init__(self, provider: Provider) -> None:
        self._key_env = provider.key_env
        self._checked: _Checked = {}  # which history messages need rewriting, kept by identity

    def headers(self) -> dict[str, str]:
        return {"anthropic-version": ANTHROPIC_VERSION, "accept": "text/event-stream"}

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        return _for_messages_wire(body, self._checked)

    def error(self, status: int, headers: httpx2.Headers, body: bytes) -> ModelError:
        return _status_error(status, headers, body, self._key_env)

    def events(self, headers: httpx2.Headers, reading: Reading) -> Iterator[dict[str, Any]]:
        return _events(headers, reading)


_Checked = dict[int, tuple[Any, Any, int, bool]]  # id(message) -> (message, content, its length, rewrite it?)


def _for_messages_wire(body: dict[str, Any], checked: _Checked | None = None) -> dict[str, Any]:
    """The body as the Messages API accepts a history made (in part) on an OpenAI-compatible server,
    for a session continued on this wire: thinking without a signature (reasoning_content) is left
    out, since the API refuses a thinking block it did not sign, and a message left empty with it
    (the API joins adjacent turns); a tool call id outside ``[a-zA-Z0-9_-]+`` (Kimi's
    ``functions.read_file:0``) is sent as the same legal id at its call and at its result.
    ``checked`` keeps each message's verdict while it is the same message (committed messages are
    replaced, never edited), so a request looks at its new messages only."""
    def unsigned(block: Any) -> bool:
        return isinstance(block, dict) and block.get("type") == "thinking" and not block.get("signature")

    def foreign(block: Any) -> bool:
        return (isinstance(block, dict) and (unsigned(block) or any(
            isinstance(block.get(k), str) and not _TOOL_ID.fullmatch(block[k]) for k in ("id", "tool_use_id"))))

    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    before = dict(checked) if checked is not None else {}
    now: _Checked = {}

    def rewrite(message: dict[str, Any]) -> bool:
        content = message["content"]
        known = before.get(id(message))
        if known is None or known[0] is not message or known[1] is not content or known[2] != len(content):
            known = (message, content, len(content), any(map(foreign, content)))
        now[id(message)] = known
        return known[3]

    kept, changed = [], False
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), list) and rewrite(message):
            # Only these are rebuilt: the others stay the same objects, so the body encoder reuses them.
            changed = True
            content = [_legal_ids(b) for b in message["content"] if not unsigned(b)]
            if not content:
                continue
            message = {**message, "content": content}
        kept.append(message)
    if checked is not None:
        checked.clear()
        checked.update(now)
    return {**body, "messages": kept} if changed else body


def _legal_ids(block: Any) -> Any:
    if not isinstance(block, dict):
        return block
    for key in ("id", "tool_use_id"):
        if isinstance(value := block.get(key), str) and not _TOOL_ID.fullmatch(value):
            digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
            block = {**block, key: f"{re.sub(r'[^a-zA-Z0-9_-]', '_', value)[:40]}_{digest}"}
    return block


def _api_message(body: bytes) -> tuple[str, str]:
    """The error's type and message: ``{"error": {…}}``, or vLLM's older top-level ``{"object": "error", …}``."""
    try:
        parsed = json.loads(body)
        error = parsed.get("error", parsed) if isinstance(parsed, dict) else None
        if not isinstance(error, dict) or (error is parsed and "message" not in parsed):
            raise ValueError("no error object")
        return str(error.get("type") or error.get("code") or "error"), str(error.get("message", ""))
    except (ValueError, TypeError):
        return "error", body[:300].decode("utf-8", "replace")


def _status_error(status: int, headers: httpx2.Headers, body: bytes, key_env: str) -> ModelError:
    kind, message = _api_message(body)
    wait = retry_after(headers)
    # Any type: llama.cpp says exceed_context_size_error, vLLM BadRequestError, Ollama api_error (HTTP 500).
    if status in TOO_LONG_STATUS and (too_long := prompt_too_long(f"{kind}: {message}",
                                                                   f"HTTP {status} {kind}: {message}")):
        too_long.status = status
        return too_long
    if status in RETRYABLE_STATUS:
        return RetryableModelError(f"HTTP {status} {kind}: {message}", status=status, retry_after=wait)
    hint = {
        401: f"check {key_env} (set it to a valid key for this service)",
        403: f"the key in {key_env} is not allowed to do this",
        404: "is the model name right? pass a current one with --model",
        413: "the conversation is too large for one request; start a new session or ask for less output",
    }.get(status)
    text = f"HTTP {status} {kind}: {message}" + (f" ({hint})" if hint else "")
    return FatalModelError(text, status=status)


def _events(headers: httpx2.Headers, reading: Reading) -> Iterator[dict[str, Any]]:
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
