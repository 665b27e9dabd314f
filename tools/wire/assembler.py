"""TurnAssembler: raw stream events in, the partial assistant message and renderer events out.

Text, thinking and tool-input JSON are accumulated by appending to lists and joined once, at the
block's ``content_block_stop``, so the cost is linear in the bytes streamed (the SDK's helper
re-parses the partial JSON on every delta, which is quadratic). Every event passes
``EventShapes`` first (tools/wire/shapes.py), so a malformed one is a retryable error, never a
traceback. Unknown event types are ignored; unknown block types are kept in history exactly as
they arrived, and deltas of unknown types are accumulated into their block (string fields
appended, list fields extended, others set), so a block such as the API's ``compaction`` goes
back to the API as it was streamed.

A ``tool_use`` block is complete at its ``content_block_stop``, or earlier: when a later block
starts and the input streamed so far parses. llama.cpp's ``/v1/messages`` sends every
``content_block_stop`` only after the whole reply was generated; without this, ten calls streamed
over nine seconds would all start at the ninth. Its late stop is then passed over; a delta that
would extend a call already dispatched is a malformed stream.

Text and thinking are the wire's strings, which may hold UTF-16 surrogates (JSON's ``\ud83d``): a
delta ending in the first half of a pair is held back until the next one brings the second, and
a surrogate left alone is replaced (U+FFFD), so what reaches the renderer, history and the
transcript is always encodable; the same holds for strings inside a tool's input.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from midstream.tools.events import (
    BlockStopped,
    Event,
    TextDelta,
    ThinkingDelta,
    ToolCallReady,
    ToolCallStarted,
    ToolInputDelta,
)
from midstream.tools.wire.errors import error_from_event
from midstream.tools.wire.shapes import EventShapes, MalformedStream

__all__ = ["TurnAssembler", "whole_characters"]

log = logging.getLogger("midstream.assembler")

_TOOL_BLOCKS = {"tool_use", "server_tool_use"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def whole_characters(text: str) -> str:
    """Surrogate pairs joined into their character, lone surrogates replaced by U+FFFD."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _whole_strings(value: Any) -> Any:
    if isinstance(value, str):
        return whole_characters(value)
    if isinstance(value, dict):
        return {whole_characters(k): _whole_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_strings(v) for v in value]
    return value


class TurnAssembler:
    """Owns one reply while it streams; ``complete`` only after ``message_stop``."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self._parts: dict[int, list[str]] = {}  # text, thinking or input JSON pieces per block
        self.stop_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.model = ""  # the model the server says it ran (message_start)
        self.complete = False
        self.bad_tool_ids: set[str] = set()
        self._shapes = EventShapes()
        self._held: dict[int, str] = {}  # a first surrogate half at the end of a block's last delta
        self._waiting: list[int] = []  # tool_use blocks still open, oldest first
        self._done_early: set[int] = set()  # ...finished when a later block started; their stop is passed over

    def feed(self, event: dict[str, Any]) -> list[Event]:
        """Apply one stream event; return what the renderer and the dispatcher should hear."""
        self._shapes.check(event)  # raises MalformedStream (retryable) for anything we cannot apply
        match event.get("type"):
            case "message_start":
                self.usage.update((event.get("message") or {}).get("usage") or {})
                self.model = str((event.get("message") or {}).get("model") or "")
            case "content_block_start":
                return [*self._finish_earlier(event["index"]), *self._start_block(event["index"],
                                                                                  dict(event["content_block"]))]
            case "content_block_delta":
                return self._delta(event["index"], event.get("delta") or {})
            case "content_block_stop":
                if event["index"] in self._done_early:
                    return []
                return self._stop_block(event["index"])
            case "message_delta":
                delta = event.get("delta") or {}
                self.stop_reason = delta.get("stop_reason", self.stop_reason)
                self.usage.update(event.get("usage") or {})
            case "message_stop":
                self.complete = True
            case "error":
                raise error_from_event(event)
            case "ping":
                pass
            case other:
                log.debug("ignoring unknown stream event type %r", other)
        return []

    def _start_block(self, index: int, block: dict[str, Any]) -> list[Event]:
        self.blocks[index] = block
        kind = block.get("type")
        if kind == "text":
            self._parts[index] = [whole_characters(block.get("text", ""))]
        elif kind == "thinking":
            self._parts[index] = [whole_characters(block.get("thinking", ""))]
        elif kind in _TOOL_BLOCKS:
            self._parts[index] = []
            if kind == "tool_use":
                self._waiting.append(index)
            return [ToolCallStarted(index, block.get("id", ""), block.get("name", ""))]
        return []

    def _finish_earlier(self, index: int) -> list[Event]:
        """Block ``index`` starts: each open tool_use before it whose input parses is complete now."""
        events: list[Event] = []
        for earlier in [i for i in self._waiting if i < index]:
            raw = "".join(self._parts[earlier])
            try:
                parsed = json.loads(raw) if raw.strip() else {}
            except ValueError:
                continue  # not whole yet (or never): its content_block_stop decides
            if isinstance(parsed, dict):
                self._parts[earlier] = [raw]
                self._done_early.add(earlier)
                events += self._stop_block(earlier)
        return events

    def _accumulate(self, block: dict[str, Any], delta: dict[str, Any]) -> None:
        """A delta of a type we do not know: its fields extend the block's fields of the same name."""
        for key, value in delta.items():
            if key == "type":
                continue
            have = block.get(key)
            if isinstance(value, str) and isinstance(have, str | None):
                block[key] = (have or "") + value
            elif isinstance(value, list) and isinstance(have, list | None):
                block[key] = [*(have or []), *value]
            elif value is not None or key not in block:
                block[key] = value

    def _delta(self, index: int, delta: dict[str, Any]) -> list[Event]:
        block = self.blocks[index]  # EventShapes made sure the block is open
        match delta.get("type"):
            case "text_delta":
                text = self._whole(index, delta["text"])
                self._parts[index].append(text)
                return [TextDelta(index, text)] if text else []
            case "input_json_delta":
                if index in self._done_early:
                    if delta["partial_json"].strip():
                        raise MalformedStream(f"input for tool call {block.get('id')!r} after a later block "
                                              "had started and its input was already whole")
                    return []
                self._parts.setdefault(index, []).append(delta["partial_json"])  # any block with an input
                return [ToolInputDelta(block.get("id", ""), delta["partial_json"])]
            case "thinking_delta":
                thinking = self._whole(index, delta["thinking"])
                self._parts[index].append(thinking)
                return [ThinkingDelta(index, thinking)] if thinking else []
            case "signature_delta":
                block["signature"] = block.get("signature", "") + delta["signature"]
            case "citations_delta":
                block["citations"] = [*(block.get("citations") or []), delta["citation"]]
            case _:
                self._accumulate(block, delta)
        return []

    def _whole(self, index: int, piece: str) -> str:
        """A delta's text in whole characters; a trailing first half waits for its second."""
        piece = self._held.pop(index, "") + piece
        if piece and "\ud800" <= piece[-1] <= "\udbff":
            self._held[index], piece = piece[-1], piece[:-1]
        return whole_characters(piece)

    def _stop_block(self, index: int) -> list[Event]:
        if index in self._waiting:
            self._waiting.remove(index)
        block = self.blocks[index]
        kind = block.get("type", "")
        parts = self._parts.pop(index, None)
        shown: list[Event] = []
        if index in self._held and parts is not None:  # a first half whose second never came
            del self._held[index]
            parts.append("\ufffd")
            shown.append(TextDelta(index, "\ufffd") if kind == "text" else ThinkingDelta(index, "\ufffd"))
        if kind == "text" and parts is not None:
            block["text"] = "".join(parts)
        elif kind == "thinking" and parts is not None:
            block["thinking"] = "".join(parts)
        elif kind in _TOOL_BLOCKS and parts is not None:
            ready = self._finish_tool_input(index, block, "".join(parts))
            return [BlockStopped(index, kind), ready] if kind == "tool_use" else [BlockStopped(index, kind)]
        elif parts is not None:  # a block type we do not know that streamed an input
            self._finish_tool_input(index, block, "".join(parts))
        return [*shown, BlockStopped(index, kind)]

    def _finish_tool_input(self, index: int, block: dict[str, Any], raw: str) -> ToolCallReady:
        error = None
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                parsed = None
                snippet = raw if len(raw) <= 200 else raw[:200] + "…"
                error = f"The tool input was not valid JSON ({exc}); nothing was run. Input received: {snippet}"
            if parsed is not None and not isinstance(parsed, dict):
                error = f"The tool input must be a JSON object, got {type(parsed).__name__}; nothing was run."
                parsed = None
            if isinstance(parsed, dict) and (_SURROGATE.search(raw) or _ESCAPED_SURROGATE.search(raw)):
                parsed = _whole_strings(parsed)
            # History must hold an object; a broken input is recorded as {} beside the error result.
            block["input"] = parsed if isinstance(parsed, dict) else {}
        else:
            block.setdefault("input", {})
        if error:
            self.bad_tool_ids.add(block.get("id", ""))
        return ToolCallReady(index, block.get("id", ""), block.get("name", ""), block["input"], error)

    def partial_message(self) -> dict[str, Any]:
        """What streamed before an interrupt: unfinished text kept, unfinished tool_use and thinking
        dropped (a tool_use without its whole input cannot run; thinking needs its signature)."""
        content = []
        for index in sorted(self.blocks):
            block = self.blocks[index]
            if index in self._parts:
                if block.get("type") != "text":
                    continue
                block = {**block, "text": "".join(self._parts[index])}
            if block.get("type") == "text" and not block.get("text"):
                continue  # the API refuses empty text blocks
            content.append(block)
        return {"role": "assistant", "content": content}

    def message(self) -> dict[str, Any]:
        """The assistant message for history, blocks in index order, unfinished blocks dropped."""
        content = [self.blocks[i] for i in sorted(self.blocks) if i not in self._parts]
        return {"role": "assistant", "content": content}
