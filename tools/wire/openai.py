"""The OpenAI Chat Completions wire: Ollama's ``/v1``, llama.cpp's ``llama-server``, vLLM, LM Studio, OpenAI.

The provider seam of shared/DESIGN.md: history stays in the Messages API's shape and is translated
per request (``chat_request``); the reply's chunks are translated into the same Anthropic-shaped
stream events the TurnAssembler consumes (``ChunkTranslator``), so the loop, the scheduler, rollback
and the renderers never see this wire.

Chat Completions has no ``content_block_stop``: a tool call's arguments simply stop growing. A call
is complete, and its block stopped (which dispatches it), the moment anything else begins: a later
tool call, text or reasoning after it, or ``finish_reason``. ``data: [DONE]`` is ``message_stop``;
a stream that ends without it never completes and is rolled back like a broken Anthropic reply.

Errors follow tools/wire/errors.py's hierarchy: ``context_length_exceeded`` (and the llama.cpp and
vLLM forms of it) is ``PromptTooLong``, recognised by errors.py's one ``prompt_too_long``;
``insufficient_quota`` is fatal even though it comes as 429; an error object inside the stream is
an ``error`` event, retryable unless it names a bad request.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx2
from midstream.tools.conversation.history import as_blocks
from midstream.tools.wire.chat_shapes import check_chunk
from midstream.tools.wire.client import Reading
from midstream.tools.wire.errors import (
    RETRYABLE_STATUS,
    TOO_LONG_STATUS,
    FatalModelError,
    ModelError,
    PromptTooLong,
    RetryableModelError,
    prompt_too_long,
    retry_after,
)
from midstream.tools.wire.sse import iter_sse

if TYPE_CHECKING:
    from midstream.tools.wire.providers import Provider

__all__ = ["ChatDialect", "ChunkTranslator", "chat_request", "chat_usage"]

STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "function_call": "tool_use",
                "length": "max_tokens", "content_filter": "refusal"}
_decode_json = json.JSONDecoder().decode
_TEXT_FIELDS = ("content", "refusal")
_REASONING_FIELDS = ("reasoning_content", "reasoning")  # DeepSeek, llama.cpp, vLLM; Ollama and OpenRouter
_BAD_REQUEST_KINDS = {"invalid_request_error", "invalid_request", "bad_request", "not_found_error",
                      "authentication_error", "permission_error", "insufficient_quota"}


# -- requests ------------------------------------------------------------------------------------

_Made = dict[int, tuple[Any, Any, int, list[dict[str, Any]]]]  # id -> (source, its content, its length, translation)


def chat_request(body: dict[str, Any], *, max_tokens_field: str = "max_tokens",
                 made: _Made | None = None) -> dict[str, Any]:
    """A Messages API request body as a streaming Chat Completions request.

    Thinking blocks are not sent back; ``cache_control`` markers are dropped (these servers cache
    prefixes by themselves); a ``tool_result`` becomes a ``role: tool`` message right after the
    assistant message that called it, before any text the person added in the same turn.

    ``made`` (one per client) keeps each history message's translation while the message, its
    content and the content's length are the ones it was made from (committed messages are replaced,
    never edited in place), so the same Chat message dicts go out again and tools/wire/body.py's
    BodyEncoder reuses their JSON: a request costs its new messages, not the whole history. What
    this request did not use is forgotten.
    """
    before = dict(made) if made is not None else {}
    now: _Made = {}

    def translated(source: Any, content: Any, translate: Any) -> list[dict[str, Any]]:
        size = len(content) if isinstance(content, list | str) else -1
        known = before.get(id(source))
        if known is None or known[0] is not source or known[1] is not content or known[2] != size:
            known = (source, content, size, translate())
        now[id(source)] = known
        return known[3]

    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages += translated(system, system, lambda: _system_message(system))
    for message in body.get("messages", []):
        content = message["content"]
        if message["role"] == "assistant":
            messages += translated(message, content, lambda c=content: _assistant_message(as_blocks(c)))
        else:
            messages += translated(message, content, lambda c=content: _user_messages(as_blocks(c)))
    if made is not None:
        made.clear()
        made.update(now)
    request: dict[str, Any] = {"model": body.get("model"), "messages": messages, "stream": True,
                               "stream_options": {"include_usage": True}}
    if body.get("max_tokens"):
        request[max_tokens_field] = body["max_tokens"]
    if tools := body.get("tools"):
        request["tools"] = [
            {"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                              "parameters": t.get("input_schema") or {"type": "object"}}}
            for t in tools
        ]
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("stop_sequences", "stop")):
        if ours in body:
            request[theirs] = body[ours]
    return request


def _system_message(system: Any) -> list[dict[str, Any]]:
    text = system if isinstance(system, str) else _joined_text(system)
    return [{"role": "system", "content": text}] if text else []


def _joined_text(blocks: list[dict[str, Any]]) -> str:
    return "\n\n".join(b["text"] for b in blocks if b.get("type") == "text" and b.get("text"))


def _assistant_message(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    calls = [
        {"id": b["id"], "type": "function",
         "function": {"name": b["name"], "arguments": json.dumps(b.get("input") or {}, ensure_ascii=False)}}
        for b in blocks if b.get("type") == "tool_use"
    ]
    text = _joined_text(blocks)
    if not text and not calls:
        return []  # thinking only: nothing this wire can carry
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _user_messages(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("type") == "tool_result":
            content = block.get("content", "")
            text = content if isinstance(content, str) else _joined_text(content)
            if block.get("is_error"):
                text = f"Error: {text}"
            out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
    if text := _joined_text(blocks):
        out.append({"role": "user", "content": text})
    return out


# -- replies -------------------------------------------------------------------------------------

def chat_usage(usage: dict[str, Any]) -> dict[str, int]:
    """Chat Completions usage in the Messages API's terms: cached prompt tokens are cache reads,
    and ``input_tokens`` counts only the rest, as Anthropic's does."""
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or usage.get("prompt_cache_hit_tokens") or 0)
    prompt = int(usage.get("prompt_tokens") or 0)
    return {"input_tokens": max(0, prompt - cached), "output_tokens": int(usage.get("completion_tokens") or 0),
            "cache_read_input_tokens": cached}


class ChunkTranslator:
    """Chat Completions chunks in, Anthropic-shaped stream events out; one reply per translator.

    At most one block is open at a time (the order the model wrote things in); opening any block
    stops the open one, which is what dispatches a finished tool call mid-stream.
    """

    def __init__(self, taken: frozenset[str] = frozenset()) -> None:
        self._started = False
        self._next_index = 0
        self._open: tuple[int, str] | None = None  # (block index, "text" | "thinking" | "tool")
        self._calls: dict[tuple[str, Any], int] = {}  # the server's key of a tool call -> our block index
        self._last_call: tuple[str, Any] | None = None
        self._ids: set[str] = set(taken)  # tool call ids of the conversation so far and of this reply
        self._finish: str | None = None
        self.finished = False  # [DONE] arrived

    def chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """One decoded ``data:`` object."""
        events = [] if self._started else self._start(chunk)
        choices = chunk.get("choices")
        if not choices and (error := chunk.get("error")) is not None:
            return [*events, _error_event(error)]
        for choice in choices or ():
            if choice.get("index", 0) != 0:
                continue  # n > 1 is never asked for; only the first choice is the reply
            if delta := choice.get("delta"):
                events += self._delta(delta)
            if finish := choice.get("finish_reason"):
                events += self._stop_open()
                self._finish = finish
                events.append({"type": "message_delta", "delta": {"stop_reason": self._stop_reason()}})
        if usage := chunk.get("usage"):
            events.append({"type": "message_delta", "delta": {}, "usage": chat_usage(usage)})
        return events

    def _delta(self, delta: dict[str, Any]) -> list[dict[str, Any]]:
        # In the order the server wrote the fields; usually there is one.
        events: list[dict[str, Any]] = []
        reasoned = False
        for field, value in delta.items():
            if not value:
                continue
            if field == "tool_calls" and isinstance(value, list):
                for position, piece in enumerate(value):
                    events += self._tool_piece(position, piece)
            elif field in _TEXT_FIELDS and isinstance(value, str):
                events += self._stream_into("text", {"type": "text_delta", "text": value})
            elif field in _REASONING_FIELDS and isinstance(value, str) and not reasoned:
                reasoned = True  # a server that sends both names sends the same text twice
                events += self._stream_into("thinking", {"type": "thinking_delta", "thinking": value})
        return events

    def done(self) -> list[dict[str, Any]]:
        """``data: [DONE]``: the reply is complete."""
        events = [*self._start({}), *self._stop_open()]
        if self._finish is None:  # a server that never said why it stopped
            events.append({"type": "message_delta", "delta": {"stop_reason": self._stop_reason()}})
        self.finished = True
        return [*events, {"type": "message_stop"}]

    def _stop_reason(self) -> str:
        if self._calls and self._finish in (None, "stop", "tool_calls", "function_call"):
            return "tool_use"  # some servers say "stop" after calling tools; the calls still want results
        return STOP_REASONS.get(self._finish or "stop", "end_turn")

    def _start(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        return [{"type": "message_start", "message": {
            "id": chunk.get("id", ""), "type": "message", "role": "assistant", "model": chunk.get("model", ""),
            "content": [], "stop_reason": None, "usage": {}}}]

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._stop_open()
        index = self._next_index
        self._next_index += 1
        self._open = (index, kind)
        return [*events, {"type": "content_block_start", "index": index, "content_block": block}]

    def _stop_open(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        index, _ = self._open
        self._open = None
        return [{"type": "content_block_stop", "index": index}]

    def _stream_into(self, kind: str, delta: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._open is None or self._open[1] != kind:
            block = {"type": "text", "text": ""} if kind == "text" else {"type": "thinking", "thinking": ""}
            events = self._open_block(kind, block)
        assert self._open is not None
        return [*events, {"type": "content_block_delta", "index": self._open[0], "delta": delta}]

    def _tool_piece(self, position: int, piece: dict[str, Any]) -> list[dict[str, Any]]:
        function = piece.get("function") or {}
        call_id = piece.get("id")
        # The index names the call; without one (some Ollama versions) a new id starts a call,
        # and a piece with neither continues the last one.
        if piece.get("index") is not None:
            key: tuple[str, Any] = ("index", piece["index"])
        elif call_id and ("id", call_id) in self._calls:
            key = ("id", call_id)
        elif call_id or self._last_call is None:
            key = ("id", call_id or f"position-{position}")
        else:
            key = self._last_call
        events: list[dict[str, Any]] = []
        if key not in self._calls:
            if not call_id or call_id in self._ids:  # missing, or reused by a lax server (TGI: "0", each reply)
                call_id = f"call_{uuid.uuid4().hex[:24]}"
            self._ids.add(call_id)
            block: dict[str, Any] = {"type": "tool_use", "id": call_id, "name": function.get("name") or "", "input": {}}
            events = self._open_block("tool", block)
            self._calls[key] = self._next_index - 1
            self._last_call = key
        index = self._calls[key]
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # a whole call as an object (seen from Ollama)
            arguments = json.dumps(arguments)
        if isinstance(arguments, str) and arguments:
            if self._open != (index, "tool"):
                raise RetryableModelError(
                    "malformed reply: arguments arrived for a tool call after it had ended "
                    f"(call {key[1]!r}); the calls were interleaved, which this client cannot dispatch early")
            events.append({"type": "content_block_delta", "index": index,
                           "delta": {"type": "input_json_delta", "partial_json": arguments}})
        return events


def _error_event(error: Any) -> dict[str, Any]:
    """An error object inside the stream, as the ``error`` event the assembler turns into a failed turn."""
    if not isinstance(error, dict):
        error = {"message": str(error)}
    kind, message = _kind(error), str(error.get("message", ""))
    if too_long := _too_long(error, kind, message, f"stream error {kind}: {message}"):
        raise too_long
    code = error.get("code")
    bad_request = kind in _BAD_REQUEST_KINDS or (isinstance(code, int) and 400 <= code < 500
                                                  and code not in RETRYABLE_STATUS)
    # Anthropic's names, so the assembler's one rule decides: api_error is retried, the other is not.
    mapped = "invalid_request_error" if bad_request else "api_error"
    shown = message if kind == mapped else f"{kind}: {message}"  # the kind is shown once, not twice
    return {"type": "error", "error": {"type": mapped, "message": shown}}


def _kind(error: dict[str, Any]) -> str:
    code = error.get("code")
    return str(code if isinstance(code, str) and code else error.get("type") or "error")


def _too_long(error: dict[str, Any], kind: str, message: str, shown: str) -> PromptTooLong | None:
    """errors.py's one recogniser, on the code and the message; llama.cpp also sends the numbers."""
    too_long = prompt_too_long(f"{kind}: {message}", shown)
    if too_long is not None and too_long.tokens is None:
        tokens, limit = error.get("n_prompt_tokens"), error.get("n_ctx")
        if isinstance(tokens, int) and isinstance(limit, int):
            too_long.tokens, too_long.limit = tokens, limit
    return too_long


def _status_error(status: int, headers: httpx2.Headers, body: bytes, key_env: str) -> ModelError:
    try:
        error = _decode_json(body.decode("utf-8"))["error"]
        if not isinstance(error, dict):
            error = {"message": str(error)}
    except (ValueError, KeyError, TypeError, AttributeError):
        error = {"message": body[:300].decode("utf-8", "replace")}
    kind, message = _kind(error), str(error.get("message", ""))
    text = f"HTTP {status} {kind}: {message}"
    if status in TOO_LONG_STATUS and (too_long := _too_long(error, kind, message, text)):
        too_long.status = status
        return too_long
    if status in RETRYABLE_STATUS and kind != "insufficient_quota":
        return RetryableModelError(text, status=status, retry_after=retry_after(headers))
    hint = {
        401: f"check {key_env} (set it to a valid key for this service)",
        403: f"the key in {key_env} is not allowed to do this",
        404: "is the model name right? pass one this server has with --model (Ollama: `ollama pull NAME` first)",
        429: "the account's quota is used up",
    }.get(status)
    return FatalModelError(text + (f" ({hint})" if hint else ""), status=status)


def _chat_events(headers: httpx2.Headers, reading: Reading,
                 taken: frozenset[str] = frozenset()) -> Iterator[dict[str, Any]]:
    content_type = headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise RetryableModelError(f"expected an event stream from the model service, got {content_type!r}")
    translator = ChunkTranslator(taken)
    for _, data in iter_sse(reading.chunks):
        if not data.startswith(b"{") and data.strip() == b"[DONE]":
            reading.stopped = True  # the rest of the body is drained, so the connection is reused
            yield from translator.done()
            return
        try:
            chunk = _decode_json(data.decode("utf-8"))
        except ValueError as exc:
            raise RetryableModelError(f"malformed chunk from the model service: {data[:120]!r}") from exc
        check_chunk(chunk)  # raises MalformedStream (retryable) for a shape the translator cannot read
        yield from translator.chunk(chunk)


class ChatDialect:
    """``POST {base}/chat/completions`` with ``stream: true``: its headers, body, errors and events."""

    path = "/chat/completions"

    def __init__(self, provider: Provider, base_url: str) -> None:
        self._key_env = provider.key_env
        # OpenAI's newer models refuse max_tokens; local servers know only max_tokens.
        self._max_tokens_field = "max_completion_tokens" if "api.openai.com" in base_url else "max_tokens"
        self._made: _Made = {}  # history messages already translated, reused by identity
        self._taken: frozenset[str] = frozenset()  # the tool call ids of the history last sent

    def headers(self) -> dict[str, str]:
        return {"accept": "text/event-stream"}

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        self._taken = frozenset(
            b["id"] for m in body.get("messages", ())
            if m.get("role") == "assistant" and isinstance(m.get("content"), list)
            for b in m["content"]
            if isinstance(b, dict) and b.get("type") == "tool_use" and isinstance(b.get("id"), str))
        return chat_request(body, max_tokens_field=self._max_tokens_field, made=self._made)

    def error(self, status: int, headers: httpx2.Headers, body: bytes) -> ModelError:
        return _status_error(status, headers, body, self._key_env)

    def events(self, headers: httpx2.Headers, reading: Reading) -> Iterator[dict[str, Any]]:
        return _chat_events(headers, reading, self._taken)  # an id the history holds is given a fresh one
