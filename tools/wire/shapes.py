"""The one place that checks the shape of every stream event before the assembler touches it.

A provider may send anything: a ``content_block_start`` without its block, a delta without an
``index`` or for a block that never started, an index that is a string, a ``text_delta`` without
``text``, a second start at an index already open, a ``tool_use`` without an id or with the id of
an earlier block. Each is a :class:`MalformedStream`, a retryable model error: the reply is rolled
back and asked for again, never half-assembled and never a traceback. Unknown event types and
unknown delta types are not malformed (the API adds new ones); their fields are only checked
enough for the assembler to accumulate them safely.
"""

from __future__ import annotations

from typing import Any

from midstream.tools.wire.errors import RetryableModelError

__all__ = ["EventShapes", "MalformedStream"]

# delta type -> the field it carries, that field's type, and the block types it may extend
# (None: any block whose type we do not know, as well as tool blocks)
_KNOWN_DELTAS: dict[str, tuple[str, type, frozenset[str] | None]] = {
    "text_delta": ("text", str, frozenset({"text"})),
    "citations_delta": ("citation", dict, frozenset({"text"})),
    "thinking_delta": ("thinking", str, frozenset({"thinking"})),
    "signature_delta": ("signature", str, frozenset({"thinking"})),
    "input_json_delta": ("partial_json", str, None),
}
_TYPED_BLOCKS = frozenset({"text", "thinking", "redacted_thinking"})
_TOOL_BLOCKS = {"tool_use", "server_tool_use"}


class MalformedStream(RetryableModelError):
    """An event the Messages API would never send; the reply is retried."""


def _malformed(why: str, event: dict[str, Any]) -> MalformedStream:
    shown = repr(event)
    return MalformedStream(f"malformed stream event ({why}): {shown[:160]}{'…' if len(shown) > 160 else ''}")


def _check_counts(usage: dict[str, Any], event: dict[str, Any]) -> None:
    """Token counts are numbers (or absent): a count sent as a string would be summed as one."""
    for key, value in usage.items():
        if key.endswith("_tokens") and value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise _malformed(f"{key} is not a number", event)


class EventShapes:
    """Checks each event of one reply against the ones before it (which blocks are open)."""

    def __init__(self) -> None:
        self._open: dict[int, str] = {}  # index -> block type
        self._closed: set[int] = set()
        self._tool_ids: set[str] = set()

    def check(self, event: Any) -> None:
        """Raise :class:`MalformedStream` unless ``event`` can be applied as it is."""
        if not isinstance(event, dict):
            raise _malformed("not an object", {"event": event})
        kind = event.get("type")
        if not isinstance(kind, str):
            raise _malformed("no type", event)
        match kind:
            case "message_start":
                message = event.get("message")
                if not isinstance(message, dict) or not isinstance(message.get("usage", {}), dict):
                    raise _malformed("message_start without its message", event)
                _check_counts(message.get("usage") or {}, event)
            case "content_block_start":
                index = self._index(event)
                if index in self._open or index in self._closed:
                    raise _malformed(f"block {index} started twice", event)
                self._check_block(event)
                self._open[index] = event["content_block"]["type"]
            case "content_block_delta":
                index = self._index(event)
                if index not in self._open:
                    raise _malformed(f"delta for block {index}, which is not open", event)
                self._check_delta(event, self._open[index])
            case "content_block_stop":
                index = self._index(event)
                if index not in self._open:
                    raise _malformed(f"stop for block {index}, which is not open", event)
                del self._open[index]
                self._closed.add(index)
            case "message_delta":
                delta = event.get("delta", {})
                if not isinstance(delta, dict) or not isinstance(delta.get("stop_reason"), str | None):
                    raise _malformed("message_delta without a proper delta", event)
                if not isinstance(event.get("usage", {}), dict):
                    raise _malformed("usage is not an object", event)
                _check_counts(event.get("usage") or {}, event)
            case "error":
                if not isinstance(event.get("error", {}), dict):
                    raise _malformed("error is not an object", event)

    @staticmethod
    def _index(event: dict[str, Any]) -> int:
        index = event.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise _malformed("index missing or not a number", event)
        return index

    def _check_block(self, event: dict[str, Any]) -> None:
        block = event.get("content_block")
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _malformed("content_block_start without its block", event)
        kind = block["type"]
        if kind == "text" and not isinstance(block.get("text", ""), str):
            raise _malformed("text block whose text is not a string", event)
        if kind == "thinking" and not isinstance(block.get("thinking", ""), str):
            raise _malformed("thinking block whose thinking is not a string", event)
        if kind in _TOOL_BLOCKS:
            tool_id, name = block.get("id"), block.get("name")
            if not isinstance(tool_id, str) or not tool_id:
                raise _malformed(f"{kind} without an id", event)
            if not isinstance(name, str) or not name:
                raise _malformed(f"{kind} without a name", event)
            if tool_id in self._tool_ids:
                raise _malformed(f"a second {kind} with id {tool_id}", event)
            self._tool_ids.add(tool_id)

    @staticmethod
    def _check_delta(event: dict[str, Any], block_type: str) -> None:
        delta = event.get("delta")
        if not isinstance(delta, dict) or not isinstance(delta.get("type"), str):
            raise _malformed("delta without a type", event)
        if known := _KNOWN_DELTAS.get(delta["type"]):
            field, kind, blocks = known
            if not isinstance(delta.get(field), kind):
                raise _malformed(f"{delta['type']} without {field}", event)
            if block_type not in blocks if blocks is not None else block_type in _TYPED_BLOCKS:
                raise _malformed(f"{delta['type']} for a {block_type} block", event)
