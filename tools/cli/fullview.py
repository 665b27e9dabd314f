"""``/transcript``: the whole session with nothing folded, read from its file on disk.

Every committed message in order, from the session's transcript (so what came before a compaction
is there too, marked where the model's view was summarised): what the person typed, the model's
thinking and text whole, each call with what it returned whole, and a diff the terminal folded
(still in tools/ui/folds.py) in colour in its place. Memory is the file's, once, while it is shown.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from midstream.tools.cli.sessions import user_text
from midstream.tools.conversation.history import as_blocks
from midstream.tools.conversation.transcript import read_records
from midstream.tools.ui.lines import visible
from rich.text import Text

if TYPE_CHECKING:
    from midstream.agent import Agent
    from midstream.tools.ui.folds import Folds

__all__ = ["transcript_rows"]

_TARGETS = ("command", "path", "pattern", "url", "query")


def transcript_rows(agent: Agent, folds: Folds | None) -> list[Text]:
    """The session as rows to page through."""
    records: list[dict[str, Any]]
    title = "this conversation"
    if agent.transcript is not None:
        title = f"session {agent.transcript.id}"
        try:
            records = read_records(agent.transcript.path)[0]
        except OSError:  # gone or unreadable: what is in memory
            records = [{"type": "message", "message": m} for m in agent.history]
    else:
        records = [{"type": "message", "message": m} for m in agent.history]
    said = sum(1 for r in records if r.get("type") == "message" and r["message"].get("role") == "user"
               and user_text(r["message"]))
    rows = [Text(f"Transcript · {title} · {said} message{'s' * (said != 1)} from you", style="bold")]
    results = {str(b.get("tool_use_id")): b for r in records if r.get("type") == "message"
               for b in _blocks(r["message"]) if b.get("type") == "tool_result"}
    calls = {str(b.get("id")) for r in records if r.get("type") == "message"
             for b in _blocks(r["message"]) if b.get("type") == "tool_use"}
    for record in records:
        if record.get("type") == "compaction":
            rows.append(Text("── compacted here: from this point on the model sees a summary of what came before ──",
                             style="dim"))
        elif record.get("type") == "message":
            rows += _message(record["message"], folds, results, calls)
    return rows


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in as_blocks(message.get("content")) if isinstance(b, dict)]


def _message(message: dict[str, Any], folds: Folds | None, results: dict[str, dict[str, Any]],
             calls: set[str]) -> list[Text]:
    """One message's rows; a call's result goes under the call (``results``), not where it was sent."""
    rows: list[Text] = []
    blocks = _blocks(message)
    if message.get("role") == "user":
        if text := user_text(message):
            rows.append(Text(""))
            rows += _lines(text, "bold", first="› ", then="  ")
        for block in blocks:
            if block.get("type") == "tool_result" and str(block.get("tool_use_id")) not in calls:
                rows += _result(block, folds)  # a result without its call (a repaired history): where it is
        return rows
    for block in blocks:
        kind = block.get("type")
        if kind == "thinking":
            rows.append(Text("✻ thinking", style="dim italic"))
            rows += _lines(str(block.get("thinking", "")), "dim italic", first="  ", then="  ")
        elif kind == "redacted_thinking":
            rows.append(Text("✻ thinking (redacted by the service)", style="dim italic"))
        elif kind == "text" and str(block.get("text", "")).strip():
            rows += _lines(str(block["text"]), "", first="", then="")
        elif kind == "tool_use":
            rows.append(Text(visible(f"● {block.get('name', '?')} {_target(block.get('input'))}".rstrip()),
                             style="cyan"))
            if (result := results.get(str(block.get("id")))) is not None:
                rows += _result(result, folds)
    return rows


def _target(args: Any) -> str:
    if not isinstance(args, dict):
        return ""
    for name in _TARGETS:
        if isinstance(args.get(name), str):
            return " ".join(str(args[name]).split())
    return json.dumps(args, ensure_ascii=False)[:200]


def _result(block: dict[str, Any], folds: Folds | None) -> list[Text]:
    fold = folds.of_call(str(block.get("tool_use_id", ""))) if folds is not None else None
    if fold is not None and fold.kind == "diff":
        from midstream.tools.ui.diffs import full

        return full(fold.text)
    content = block.get("content")
    if isinstance(content, list):
        content = "\n".join(str(b.get("text", f"[{b.get('type', 'block')}]")) for b in content if isinstance(b, dict))
    style = "red" if block.get("is_error") else "dim"
    return _lines(str(content or ""), style, first="  ⎿ ", then="    ")


def _lines(text: str, style: str, *, first: str, then: str) -> list[Text]:
    lines = text.splitlines() or [""]
    return [Text(visible((first if n == 0 else then) + line), style=style) for n, line in enumerate(lines)]
