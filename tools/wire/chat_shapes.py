"""The one place that checks the shape of every Chat Completions chunk before the translator reads it.

The Chat wire's counterpart of tools/wire/shapes.py: a server may send ``"delta": "hello"``,
``"choices": {…}``, a ``tool_calls`` piece that is a string, ``"function": "bash"``, an index that
is a list or a string, an id that is an object, ``"usage": "lots"``, token counts as strings. Each
is a :class:`MalformedStream` (retryable: the reply is rolled back and asked for again), never a
traceback and never a call half-read. Fields we do not know are not checked (servers add their own).
"""

from __future__ import annotations

from typing import Any

from midstream.tools.wire.shapes import MalformedStream

__all__ = ["check_chunk"]

_STRINGS = ("content", "refusal", "reasoning_content", "reasoning", "role")
_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens", "prompt_cache_hit_tokens")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional(value: Any, kind: type | tuple[type, ...]) -> bool:
    return value is None or isinstance(value, kind)


def _problem(chunk: Any) -> str | None:
    if not isinstance(chunk, dict):
        return "a chunk that is not an object"
    if not _optional(chunk.get("id"), str) or not _optional(chunk.get("model"), str):
        return "id or model is not a string"
    choices = chunk.get("choices")
    if not _optional(choices, list):
        return "choices is not a list"
    for choice in choices or ():
        if not isinstance(choice, dict):
            return "a choice that is not an object"
        if not (choice.get("index") is None or _int(choice["index"])):
            return "a choice index that is not a number"
        if not _optional(choice.get("finish_reason"), str):
            return "finish_reason is not a string"
        if (problem := _delta_problem(choice.get("delta"))) is not None:
            return problem
    usage = chunk.get("usage")
    if not _optional(usage, dict):
        return "usage is not an object"
    if usage:
        if any(not (usage.get(k) is None or _int(usage[k])) for k in _COUNTS):
            return "a token count that is not a number"
        details = usage.get("prompt_tokens_details")
        if not _optional(details, dict) or (details and not (details.get("cached_tokens") is None
                                                             or _int(details["cached_tokens"]))):
            return "prompt_tokens_details is not an object of counts"
    return None


def _delta_problem(delta: Any) -> str | None:
    if delta is None:
        return None
    if not isinstance(delta, dict):
        return "a delta that is not an object"
    if any(not _optional(delta.get(k), str) for k in _STRINGS):
        return "a delta's text is not a string"
    pieces = delta.get("tool_calls")
    if not _optional(pieces, list):
        return "tool_calls is not a list"
    for piece in pieces or ():
        if not isinstance(piece, dict):
            return "a tool call piece that is not an object"
        if not (piece.get("index") is None or _int(piece["index"])):
            return "a tool call index that is not a number"
        if not _optional(piece.get("id"), str) or not _optional(piece.get("type"), str):
            return "a tool call id or type that is not a string"
        function = piece.get("function")
        if not _optional(function, dict):
            return "a tool call's function is not an object"
        if function and (not _optional(function.get("name"), str)
                         or not _optional(function.get("arguments"), (str, dict))):
            return "a tool call's name or arguments have the wrong type"
    return None


def check_chunk(chunk: Any) -> None:
    """Raise :class:`MalformedStream` unless the translator can read ``chunk`` as it is."""
    if (problem := _problem(chunk)) is not None:
        shown = repr(chunk)
        raise MalformedStream(f"malformed chunk from the model service ({problem}): "
                              f"{shown[:160]}{'…' if len(shown) > 160 else ''}")
