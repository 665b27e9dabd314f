"""``--output-format stream-json``: Claude Code's line types, with midstream's live events beside them.

One JSON object per line on stdout. Every line has ``type`` and ``event``: the name of the loop
event it renders (tools/events.py; ``ToolResults`` for the user line, which gathers several), so a
reader can follow either vocabulary. This is the one vocabulary: the browser view subscribes to exactly these objects.

Claude Code's lines (scripts written for ``claude -p --output-format stream-json`` read these):

- ``{"type": "system", "subtype": "init", "event": "SessionStarted", "session_id", "model", "cwd",
  "tools", "mcp_servers", "permissionMode", "mode", "mode_reason", "refuse_destructive", "sandbox"}``:
  first, once.
- ``{"type": "assistant", "event": "TurnCommitted", "message": {...}, "session_id",
  "parent_tool_use_id": null, "stop_reason", "usage"}``: each reply once it is committed, its
  ``message`` in the Messages API's shape (``id``, ``type: "message"``, ``role: "assistant"``,
  ``model``, ``content`` blocks ``text`` / ``thinking`` / ``tool_use`` in stream order, ``stop_reason``,
  ``usage``). A reply that broke off is never sent as an ``assistant`` line (see ``TurnRolledBack``).
- ``{"type": "user", "event": "ToolResults", "message": {"role": "user", "content": [{"type":
  "tool_result", "tool_use_id", "content", "is_error"}]}, "session_id", "parent_tool_use_id": null}``:
  the results of a reply's tool calls, once the last of them finished (an interrupted turn's results at its end).
- ``{"type": "result", "event": "TurnEnded", "subtype": "success" | "error_max_turns" |
  "error_during_execution", "is_error", "session_id", "result", "num_turns", "duration_ms",
  "duration_api_ms", "usage": {"input_tokens", "output_tokens", "cache_read_input_tokens",
  "cache_creation_input_tokens"}, "total_cost_usd", "ok", "stop_reason", "error"}``: last, once per
  message the person (or ``-p``) sent. ``result`` is the final reply's text; ``num_turns`` counts
  committed replies; ``total_cost_usd`` is null when the model's price is unknown.

midstream's live events (what makes mid-stream dispatch visible), ``{"type": "event", "event":
NAME, ...the event's fields}``, in the order the loop emits them: ``RequestStarted``, ``TextDelta``,
``ThinkingDelta``, ``BlockStopped``, ``ToolCallStarted``, ``ToolInputDelta``, ``ToolCallReady`` (the
call is complete and dispatched: usually before ``TurnCommitted``), ``ToolRunning``, ``ToolGrace``,
``ToolAsking``, ``ToolProgress``, ``ToolFinished`` (with ``result``: ``content``, ``is_error`` and
``facts``), ``TurnRolledBack`` (the partial reply is discarded; a retry follows unless ``retry_in``
is null), ``RequestUsage``, ``CacheMissed``, ``ContextUsed``, ``ContextCleared``,
``CompactionStarted``, ``Compacted``, ``CompactionFailed``, ``SandboxStatus``, ``MessageSent`` (the
person's message, committed), ``QuestionAsked`` / ``QuestionClosed`` (a question any surface may
answer, and who did: tools/questions.py). Field names are the
dataclasses' own; values that JSON cannot hold are written as strings.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from typing import Any, TextIO

from midstream.tools.events import (
    Event,
    Quiet,
    RequestStarted,
    RequestUsage,
    TextDelta,
    ThinkingDelta,
    ToolCallReady,
    ToolFinished,
    TurnCommitted,
    TurnEnded,
    TurnRolledBack,
)

__all__ = ["StreamJsonRenderer", "init_line", "result_subtype"]


def init_line(**fields: Any) -> dict[str, Any]:
    """The first line: Claude Code's ``system``/``init`` with what applies to this run."""
    return {"type": "system", "subtype": "init", "event": "SessionStarted", "mcp_servers": [],
            "permissionMode": fields.get("mode"), **fields}


def result_subtype(ok: bool, stop_reason: str | None) -> str:
    """Claude Code's words for how a run ended."""
    if ok:
        return "success"
    return "error_max_turns" if stop_reason == "max_requests" else "error_during_execution"


class StreamJsonRenderer(Quiet):
    """Writes the lines the module docstring lists; safe to call from several threads."""

    def __init__(self, out: TextIO | None = None, *, model: str = "", session_id: str = "") -> None:
        self._out = out or sys.stdout
        self.model = model
        self.session_id = session_id
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._api_seconds = 0.0
        self._request_started: float | None = None
        self._blocks: dict[int, dict[str, Any]] = {}  # the reply being streamed, by block index
        self._reply_model = ""
        self._pending: list[str] = []  # tool_use ids of the committed reply whose results are owed
        self._results: dict[str, dict[str, Any]] = {}
        self._final = ""
        self._turns = 0

    def show(self, event: Event) -> None:
        with self._lock:
            self._track(event)
            match event:
                case TurnCommitted(stop_reason=reason, usage=usage):
                    self._assistant(reason, usage)
                case TurnEnded() as ended:
                    self._user_line(force=True)
                    self._write(self._result(ended))
                    self._turns, self._final = 0, ""
                    self._started = time.monotonic()
                    self._api_seconds = 0.0
                case _:
                    self._write({"type": "event", "event": type(event).__name__, **dataclasses.asdict(event)})
            if isinstance(event, ToolFinished):
                self._user_line(force=False)

    def _track(self, event: Event) -> None:
        """Keep what the assistant and user lines are made of."""
        match event:
            case RequestStarted():
                self._blocks, self._request_started = {}, time.monotonic()
            case RequestUsage(model=model):
                self._reply_model = model
                if self._request_started is not None:
                    self._api_seconds += time.monotonic() - self._request_started
                    self._request_started = None
            case TextDelta(index=index, text=text):
                block = self._blocks.setdefault(index, {"type": "text", "text": ""})
                block["text"] += text
            case ThinkingDelta(index=index, text=text):
                block = self._blocks.setdefault(index, {"type": "thinking", "thinking": ""})
                block["thinking"] += text
            case ToolCallReady(index=index, id=call_id, name=name, input=args):
                self._blocks[index] = {"type": "tool_use", "id": call_id, "name": name, "input": args}
            case ToolFinished(id=call_id, result=result):
                self._results[call_id] = {"type": "tool_result", "tool_use_id": call_id, "content": result.content,
                                          "is_error": result.is_error}
            case TurnRolledBack():
                self._blocks = {}

    def _assistant(self, reason: str | None, usage: dict[str, Any]) -> None:
        content = [self._blocks[index] for index in sorted(self._blocks)]
        self._blocks = {}
        self._turns += 1
        texts = [block["text"] for block in content if block["type"] == "text"]
        if reason not in ("tool_use", "pause_turn"):
            self._final = "".join(texts)
        message = {"id": f"msg_{self.session_id}_{self._turns}", "type": "message", "role": "assistant",
                   "model": self._reply_model or self.model, "content": content, "stop_reason": reason,
                   "usage": usage}
        self._write({"type": "assistant", "event": "TurnCommitted", "message": message,
                     "session_id": self.session_id, "parent_tool_use_id": None, "stop_reason": reason,
                     "usage": usage})
        self._pending = [block["id"] for block in content if block["type"] == "tool_use"]
        self._user_line(force=False)

    def _user_line(self, *, force: bool) -> None:
        """The owed tool results as one user line, once all are in (``force``: whatever is in)."""
        if not self._pending or (not force and not all(i in self._results for i in self._pending)):
            return
        content = [self._results.pop(i) for i in self._pending if i in self._results]
        self._pending = []
        if content:
            self._write({"type": "user", "event": "ToolResults", "message": {"role": "user", "content": content},
                         "session_id": self.session_id, "parent_tool_use_id": None})

    def _result(self, ended: TurnEnded) -> dict[str, Any]:
        total = ended.session
        cost = total.dollars if total.requests else None
        return {
            "type": "result", "event": "TurnEnded", "subtype": result_subtype(ended.ok, ended.stop_reason),
            "is_error": not ended.ok, "session_id": self.session_id, "result": self._final,
            "num_turns": self._turns, "duration_ms": round((time.monotonic() - self._started) * 1000),
            "duration_api_ms": round(self._api_seconds * 1000), "total_cost_usd": cost,
            "usage": {"input_tokens": total.input, "output_tokens": total.output,
                      "cache_read_input_tokens": total.cache_read,
                      "cache_creation_input_tokens": total.cache_write + total.cache_write_1h},
            "ok": ended.ok, "stop_reason": ended.stop_reason, "error": ended.message or None,
        }

    def _write(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._out.flush()
