"""The scripted server's Chat Completions voice: the same scenario events, sent as OpenAI chunks.

A scenario is written once, as Anthropic-shaped events (``reply(Text(…), ToolUse(…))``); when a
request arrives on ``/v1/chat/completions`` or ``/chat/completions`` each event is rendered as the
chunks an OpenAI-compatible server would send for it, so every fault (drops, a missing terminator,
stalls, per-event delays, ``_before`` hooks) applies at the same place on both wires:

    message_start            -> a first chunk with ``delta.role``
    text / thinking deltas   -> ``delta.content`` / ``delta.reasoning_content``
    tool_use start           -> ``delta.tool_calls[k]`` with id, name and ``arguments: ""``
    input_json_delta         -> ``delta.tool_calls[k].function.arguments`` (nothing else marks the end)
    content_block_stop, ping -> nothing: this wire has no such event
    message_delta            -> a chunk with ``finish_reason``, then the usage chunk (``choices: []``)
    message_stop             -> ``data: [DONE]``
    error                    -> ``data: {"error": {…}}``
    {"type": "chat_chunk", "chunk": {…}}  -> that chunk as is (ignored on the Anthropic wire)

Each rendered piece comes with the line the server appends to its log (``sent:finish_reason:tool_calls``,
``sent:tool_call_start:1``, ``sent:[DONE]`` …).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ChatRenderer", "as_messages_body", "error_body", "is_chat_path", "render_chat"]

FINISH_REASONS = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length", "refusal": "content_filter",
                  "stop_sequence": "stop", "pause_turn": "stop"}


def as_messages_body(body: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions request in the Messages API's shape, near enough to count its tokens:
    each message (its text, tool calls or tool result) is one block."""
    messages = [{"role": m.get("role", "user"), "content": [{k: v for k, v in m.items() if k != "role"}]}
                for m in body.get("messages") or [] if isinstance(m, dict)]
    return {"tools": body.get("tools") or [], "messages": messages}


def is_chat_path(path: str) -> bool:
    """Is this request path the Chat Completions endpoint?"""
    return path.split("?", 1)[0].rstrip("/") in ("/v1/chat/completions", "/chat/completions")


class ChatRenderer:
    """Renders one reply's events in order; keeps which block is which tool call."""

    def __init__(self) -> None:
        self._tool_numbers: dict[int, int] = {}  # block index -> tool_calls[].index
        self._usage: dict[str, int] = {}

    def render(self, event: dict[str, Any]) -> list[tuple[str, bytes]]:
        """``(log line, wire bytes)`` for each piece this event becomes (often none)."""
        match event.get("type"):
            case "message_start":
                self._usage.update((event.get("message") or {}).get("usage") or {})
                return [("sent:chunk:role", self._chunk({"role": "assistant", "content": ""}))]
            case "content_block_start":
                block = event.get("content_block") or {}
                if block.get("type") != "tool_use":
                    return []
                number = self._tool_numbers[event["index"]] = len(self._tool_numbers)
                call = {"index": number, "id": block.get("id"), "type": "function",
                        "function": {"name": block.get("name"), "arguments": ""}}
                return [(f"sent:tool_call_start:{number}", self._chunk({"tool_calls": [call]}))]
            case "content_block_delta":
                return self._delta(event["index"], event.get("delta") or {})
            case "message_delta":
                self._usage.update(event.get("usage") or {})
                stop = (event.get("delta") or {}).get("stop_reason") or "end_turn"
                finish = FINISH_REASONS.get(stop, stop)
                return [(f"sent:finish_reason:{finish}", self._chunk({}, finish)),
                        ("sent:usage", _data({**_base(), "choices": [], "usage": _openai_usage(self._usage)}))]
            case "message_stop":
                return [("sent:[DONE]", b"data: [DONE]\n\n")]
            case "error":
                error = event.get("error") or {}
                wire = {"message": error.get("message", ""), "type": error.get("type", "server_error"),
                        "code": error.get("code")}
                return [("sent:error", _data({"error": wire}))]
            case "chat_chunk":
                return [("sent:chat_chunk", _data(event["chunk"]))]
        return []

    def _delta(self, index: int, delta: dict[str, Any]) -> list[tuple[str, bytes]]:
        match delta.get("type"):
            case "text_delta":
                return [("sent:content", self._chunk({"content": delta["text"]}))]
            case "thinking_delta":
                return [("sent:reasoning", self._chunk({"reasoning_content": delta["thinking"]}))]
            case "input_json_delta":
                number = self._tool_numbers[index]
                call = {"index": number, "function": {"arguments": delta["partial_json"]}}
                return [(f"sent:tool_call_arguments:{number}", self._chunk({"tool_calls": [call]}))]
        return []

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _data({**_base(), "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})


def render_chat(events: list[dict[str, Any]]) -> bytes:
    """A whole reply's wire bytes at once (for the server's burst mode)."""
    renderer = ChatRenderer()
    return b"".join(wire for e in events for _, wire in renderer.render(e))


def error_body(error: dict[str, Any]) -> bytes:
    """An HTTP error's body as OpenAI-compatible servers send it."""
    return json.dumps({"error": {"message": error.get("message", ""), "type": error.get("type", "api_error"),
                                 "param": None, "code": error.get("code")}}).encode()


def _base() -> dict[str, Any]:
    return {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0, "model": "scripted"}


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def _openai_usage(usage: dict[str, int]) -> dict[str, Any]:
    cached = int(usage.get("cache_read_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + cached + int(usage.get("cache_creation_input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}
