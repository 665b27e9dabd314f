"""The model service's errors, mapped once at the boundary into our own small hierarchy.

Everything after the wire sees these, never HTTP details::

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

Each dialect (tools/wire/anthropic.py, tools/wire/openai.py) maps its own status bodies and error
events onto these; ``prompt_too_long`` is the one recogniser of "context full" for both.
"""

from __future__ import annotations

import datetime
import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "RETRYABLE_ERROR_TYPES", "RETRYABLE_STATUS", "RETRY_HINT", "TOO_LONG_STATUS", "FatalModelError",
    "MessageSetAside", "ModelError", "PromptTooLong", "RetryableModelError", "error_from_event", "prompt_too_long",
    "retry_after",
]

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}
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
    """The request does not fit the context window; ``tokens`` and ``limit`` when the service said."""

    def __init__(self, message: str, *, status: int | None = 400, tokens: int | None = None,
                 limit: int | None = None) -> None:
        super().__init__(message, status=status)
        self.tokens = tokens
        self.limit = limit


class MessageSetAside(PromptTooLong):
    """The person's newest message alone is larger than the window: it was replaced by a note, so sending
    it again (/retry) cannot help; the person sends a shorter one."""


RETRY_HINT = " · /retry sends the same message again"  # after a failure that sending again may get past


def _seconds(value: str, scale: float = 1.0) -> float | None:
    try:
        seconds = float(value) / scale
    except ValueError:
        return None
    return None if seconds != seconds else max(0.0, seconds)  # NaN is garbage; inf is a (huge) wait


def retry_after(headers: Mapping[str, str]) -> float | None:
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


# Anthropic: "prompt is too long: 208310 tokens > 200000 maximum", and for prompt + max_tokens over
# the window "input length and `max_tokens` exceed context limit: 197202 + 16000 > 200000, …".
# OpenAI-compatible servers: the codes context_length_exceeded (OpenAI), exceed_context_size_error
# (llama.cpp: "the request exceeds the available context size"), context_window_exceeded, and vLLM's
# "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens" (or "your
# request has 5000 input tokens"; vLLM's V1 engine: "The decoder prompt (length 5000) is longer than the
# maximum model length of 4096"); Ollama: "input exceeds context length", "the input length exceeds the
# context length". These come as HTTP 400, 413 or (Ollama) 500, on either wire.
_TOO_LONG = re.compile(r"prompt is too long|exceed(?:s|ed)? (?:the )?context (?:limit|window)|maximum context length"
                       r"|context_length_exceeded|exceed_context_size_error|context_window_exceeded"
                       r"|context (?:length|size|window)[^.]{0,60}exceed"
                       r"|exceeds? (?:the )?(?:available |maximum )?context|longer than the maximum model length",
                       re.IGNORECASE)
# OpenAI-compatible: "maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens"
_OPENAI_NUMBERS = re.compile(r"maximum (?:context|model) length (?:is |of )?(\d+)(?: tokens)?.*?"
                             r"(?:resulted in|requested|has) (\d+)(?: input)? tokens", re.DOTALL)
_VLLM_NUMBERS = re.compile(r"prompt \(length (\d+)\) is longer than the maximum model length of (\d+)")
TOO_LONG_STATUS = {400, 413, 500}  # the statuses a "context full" answer comes with
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
    elif vllm := _VLLM_NUMBERS.search(text):
        tokens, limit = int(vllm.group(1)), int(vllm.group(2))
    return PromptTooLong(shown or text, tokens=tokens, limit=limit)


def error_from_event(event: dict[str, Any]) -> ModelError:
    """An ``event: error`` inside a 200 stream."""
    error = event.get("error") or {}
    kind = str(error.get("type", "error"))
    text = f"stream error {kind}: {error.get('message', '')}"
    if kind in RETRYABLE_ERROR_TYPES:
        return RetryableModelError(text)
    return FatalModelError(text)
