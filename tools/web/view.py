"""The page's state, folded from the loop's events on the server: what a tab gets when it connects.

``View.apply(event, at)`` folds one event into the state and returns the page-only records it
brings, worded or rendered here: ``Rendered`` (a segment of a text block as HTML), ``SessionUsage``
(priced), ``ToolPreview`` (what an asked-about write would change) and ``Note`` (a rollback, a
compaction, a failure, worded as the terminal words them). The page's script folds the same
records into the same shape (page.html, ``apply``), so a snapshot followed by live records equals
what a tab that watched from the start has.

The shape: ``entries`` (the conversation: user, text, thinking, tool and note entries, in order),
``questions`` (open ones), ``timeline`` (the current turn's bars: the reply's stream and each tool
call, start and end in ms), ``usage`` and ``busy``. Text blocks are keyed ``"<reply>-<index>"``,
the reply being the count of RequestStarted events seen, so both folds agree on a delta's block.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from midstream.prompts import DATE_NOTE_PREFIX
from midstream.tools.conversation.usage import Usage
from midstream.tools.events import (
    BlockStopped,
    Compacted,
    CompactionFailed,
    CompactionStarted,
    ContextCleared,
    Event,
    MessageSent,
    QuestionAsked,
    QuestionClosed,
    RequestStarted,
    RequestUsage,
    TextDelta,
    ThinkingDelta,
    ToolAsking,
    ToolCallReady,
    ToolCallStarted,
    ToolFinished,
    ToolGrace,
    ToolInputDelta,
    ToolProgress,
    ToolRunning,
    TurnCommitted,
    TurnEnded,
    TurnRolledBack,
)
from midstream.tools.ui.render import describe_context, describe_rollback, preview_rows
from midstream.tools.web.markdown import StreamingMarkdown, render

__all__ = ["OUTPUT_LINES", "View", "entries_from_history"]

OUTPUT_LINES = 200  # a tool card keeps the last this many lines of live output
RESULT_CHARS = 20_000  # and this much of the result


class View:
    """The state every tab shows; not thread-safe (the hub calls it under its lock)."""

    def __init__(self, history: list[dict[str, Any]] | None = None, session: dict[str, Any] | None = None) -> None:
        self.entries: list[dict[str, Any]] = entries_from_history(history or [])
        self.session = dict(session or {})
        self.questions: dict[str, dict[str, Any]] = {}
        self.timeline: list[dict[str, Any]] = []
        self.usage = Usage()
        self.busy = False
        self.reply = 0  # RequestStarted events seen: text blocks are keyed by it
        self._blocks: dict[str, StreamingMarkdown] = {}
        self._tools: dict[str, dict[str, Any]] = {}
        self._entry_of: dict[str, dict[str, Any]] = {}  # text/thinking key -> entry
        self._parts: dict[str, list[str]] = {}  # ...and its text so far, in pieces

    def snapshot(self) -> dict[str, Any]:
        """The whole state, as JSON-ready data."""
        for key, parts in self._parts.items():  # text is kept in pieces as it streams: joined once, here
            if len(parts) > 1:
                parts[:] = ["".join(parts)]
            self._entry_of[key]["text"] = parts[0] if parts else ""
        return {"entries": self.entries, "questions": list(self.questions.values()), "timeline": self.timeline,
                "usage": self._usage(), "busy": self.busy, "reply": self.reply, "session": self.session}

    def apply(self, event: Event, at: float) -> list[dict[str, Any]]:
        """Fold one event in; the page-only records it brings (rendered Markdown, priced usage)."""
        extra: list[dict[str, Any]] = []
        match event:
            case MessageSent(text=text):
                self.busy = True
                self.timeline = []
                self.entries.append({"kind": "user", "text": text})
            case RequestStarted(attempt=attempt):
                self.busy = True
                self.reply += 1
                self.timeline.append({"key": f"s{self.reply}", "kind": "stream", "start": at, "end": None,
                                      "label": "reply" if attempt == 1 else f"retry {attempt}"})
            case TextDelta(index=index, text=text):
                key = f"{self.reply}-{index}"
                entry = self._text_entry(key, "text")
                self._parts[key].append(text)
                for piece in self._blocks.setdefault(key, StreamingMarkdown()).feed(text):
                    extra.append(self._rendered(entry, key, piece))
            case ThinkingDelta(index=index, text=text):
                key = f"{self.reply}-{index}"
                self._text_entry(key, "thinking")
                self._parts[key].append(text)
            case BlockStopped(index=index, block_type="text"):
                key = f"{self.reply}-{index}"
                if key in self._blocks and key in self._entry_of:
                    for piece in self._blocks.pop(key).finish():
                        extra.append(self._rendered(self._entry_of[key], key, piece))
            case ToolCallStarted(id=call_id, name=name):
                self._tool(call_id, name)
            case ToolInputDelta(id=call_id, partial_json=piece) if call_id in self._tools:
                self._tools[call_id]["partial"] += piece
            case ToolCallReady(id=call_id, name=name, input=args, error=error, status=status):
                card = self._tool(call_id, name)
                card.update(input=args, partial="", state="waiting", error=error, status=status)
                self.timeline.append({"key": call_id, "kind": "tool", "label": _target(name, args), "start": at,
                                      "run": None, "end": None, "ok": None})
            case ToolAsking(id=call_id, name=name, input=args, workspace=workspace):
                card = self._tool(call_id, name)
                card.update(state="asking", preview=preview_rows(name, args, Path(workspace)))
                extra.append({"event": "ToolPreview", "id": call_id, "rows": card["preview"]})
            case ToolGrace(id=call_id, description=what, targets=targets, seconds=seconds):
                self._tool(call_id, "bash").update(state="grace", grace={
                    "description": what, "targets": list(targets), "seconds": seconds, "until": at + seconds * 1000})
            case ToolRunning(id=call_id, name=name, status=status):
                self._tool(call_id, name).update(state="running", status=status, grace=None)
                self._bar(call_id, run=at)
            case ToolProgress(id=call_id, line=line) if call_id in self._tools:
                output = self._tools[call_id]["output"]
                output.append(line)
                del output[:-OUTPUT_LINES]
            case ToolFinished(id=call_id, name=name, result=result, seconds=seconds, reused=reused, done=done):
                self._tool(call_id, name).update(state="done", seconds=seconds, reused=reused, grace=None, done=done,
                                                 result=_result(dataclasses.asdict(result)))
                self._bar(call_id, end=at, ok=not result.is_error)
            case QuestionAsked() as asked:
                self.questions[asked.id] = dataclasses.asdict(asked)
            case QuestionClosed(id=question_id):
                self.questions.pop(question_id, None)
            case RequestUsage(model=model, usage=usage):
                self.usage += Usage.billed(usage, model)
                extra.append({"event": "SessionUsage", **self._usage()})
            case TurnCommitted():
                self._end_stream(at)
            case TurnRolledBack() as rolled:
                self._end_stream(at)
                for entry in self._entry_of.values():
                    if entry.get("reply") == self.reply:
                        entry["discarded"] = True
                for card in self._tools.values():
                    if card.get("reply") == self.reply and card["state"] != "done":
                        card["state"] = "discarded"
                extra.append(self._note("warn", "↺ " + describe_rollback(rolled)))
            case ContextCleared() | CompactionStarted() | Compacted() | CompactionFailed() as context:
                extra.append(self._note("info", describe_context(context)))
            case TurnEnded(ok=ok, message=message):
                self.busy = False
                self._end_stream(at)
                if not ok and message:
                    extra.append(self._note("error", message))
        return extra

    # -- helpers ------------------------------------------------------------------------------------

    def _note(self, level: str, text: str) -> dict[str, Any]:
        """A line of midstream's own in the conversation; the page appends the same from the record."""
        self.entries.append({"kind": "note", "level": level, "text": text})
        return {"event": "Note", "level": level, "text": text}

    def _text_entry(self, key: str, kind: str) -> dict[str, Any]:
        entry = self._entry_of.get(key)
        if entry is None:
            entry = {"kind": kind, "key": key, "reply": self.reply, "text": ""}
            if kind == "text":
                entry.update(segments=[], chars=0)
            self._entry_of[key] = entry
            self._parts[key] = []
            self.entries.append(entry)
        return entry

    @staticmethod
    def _rendered(entry: dict[str, Any], key: str, piece: Any) -> dict[str, Any]:
        del entry["segments"][piece.segment:]
        entry["segments"].append(piece.html)
        entry["chars"] = piece.chars
        return {"event": "Rendered", "key": key, "segment": piece.segment, "html": piece.html, "chars": piece.chars}

    def _tool(self, call_id: str, name: str) -> dict[str, Any]:
        card = self._tools.get(call_id)
        if card is None:
            card = {"kind": "tool", "id": call_id, "name": name, "reply": self.reply, "input": {}, "partial": "",
                    "state": "streaming", "status": "", "output": [], "result": None, "grace": None, "preview": []}
            self._tools[call_id] = card
            self.entries.append(card)
        return card

    def _bar(self, key: str, **fields: Any) -> None:
        for bar in self.timeline:
            if bar["key"] == key:
                bar.update(fields)

    def _end_stream(self, at: float) -> None:
        for bar in self.timeline:
            if bar["kind"] == "stream" and bar["end"] is None:
                bar["end"] = at

    def _usage(self) -> dict[str, Any]:
        usage = self.usage
        return {"text": usage.describe() if usage.requests else "", "cost_usd": usage.dollars,
                "requests": usage.requests, "input": usage.prompt_tokens, "output": usage.output}


def _result(result: dict[str, Any]) -> dict[str, Any]:
    content = result.get("content", "")
    if len(content) > RESULT_CHARS:
        result["content"] = content[:RESULT_CHARS] + f"\n… ({len(content) - RESULT_CHARS:,} more characters)"
    return result


def _target(name: str, args: dict[str, Any]) -> str:
    target = args.get("command") or args.get("path") or args.get("pattern") or ""
    return f"{name} {str(target)[:60]}".strip()


def entries_from_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation before the view started (a resumed session, /web mid-session), as entries."""
    entries: list[dict[str, Any]] = []
    cards: dict[str, dict[str, Any]] = {}
    for message in history:
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for block in blocks:
            kind = block.get("type")
            if kind == "text" and message.get("role") == "user":
                text = block.get("text", "")
                if text.startswith(DATE_NOTE_PREFIX):
                    continue  # midstream's own context for the model, not something the person typed
                if text.startswith("[The person"):  # midstream's notes: an interruption, a command they ran
                    entries.append({"kind": "note", "level": "info", "text": text.split("\n", 1)[0]})
                else:
                    entries.append({"kind": "user", "text": text})
            elif kind == "text":
                text = block.get("text", "")
                entries.append({"kind": "text", "key": "", "text": text, "segments": [render(text)],
                                "chars": len(text)})
            elif kind == "thinking":
                entries.append({"kind": "thinking", "key": "", "text": block.get("thinking", "")})
            elif kind == "tool_use":
                card: dict[str, Any] = {
                    "kind": "tool", "id": str(block.get("id", "")), "name": block.get("name", ""),
                    "input": block.get("input", {}), "partial": "", "state": "done", "status": "", "output": [],
                    "result": None, "grace": None, "preview": []}
                cards[card["id"]] = card
                entries.append(card)
            elif kind == "tool_result" and block.get("tool_use_id") in cards:
                result = block.get("content", "")
                if isinstance(result, list):
                    result = "\n".join(part.get("text", "") for part in result if isinstance(part, dict))
                cards[block["tool_use_id"]]["result"] = _result({"content": str(result),
                                                                 "is_error": bool(block.get("is_error"))})
    return entries
