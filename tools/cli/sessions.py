"""Sessions as the person sees them: opening or resuming one, listing this workspace's sessions,
and the notice with the last exchange that a resumed session starts with."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from midstream.prompts import DATE_NOTE_PREFIX
from midstream.tools.conversation.history import as_blocks
from midstream.tools.conversation.transcript import CRASH_NOTE, Transcript, present_in
from midstream.tools.startup import LATER, Job

__all__ = ["SessionInfo", "choose", "clean_up_after_crashes", "last_exchange", "list_sessions", "open_session",
           "resumed_notice", "user_text"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
LISTED = 20


@dataclass(frozen=True)
class SessionInfo:
    path: Path
    id: str
    first_message: str
    modified: float


def user_text(message: dict[str, Any]) -> str:
    """What the person typed in a user message: text blocks, without our date note or tool results."""
    texts = [b.get("text", "") for b in as_blocks(message["content"]) if b.get("type") == "text"]
    ours = (DATE_NOTE_PREFIX, "[The person interrupted", CRASH_NOTE.partition(":")[0])  # notes we added
    return "\n".join(t for t in texts if not t.startswith(ours)).strip()


def _first_message(path: Path) -> str:
    """The first thing the person said in a session file; whatever it holds, never an error."""
    try:
        with path.open("rb") as lines:
            for line in lines:
                try:
                    record = json.loads(line.decode("utf-8"))
                    message = record["message"] if record.get("type") == "message" else None
                    if isinstance(message, dict) and message.get("role") == "user" and (text := user_text(message)):
                        return text
                except (ValueError, TypeError, KeyError, AttributeError):
                    continue  # a line that cannot be read: the listing goes on
    except OSError:
        pass
    return ""


def open_session(path: Path) -> tuple[Transcript, list[dict[str, Any]], str | None]:
    """Take the session at ``path`` (its lock: ``SessionInUse`` when another midstream has it), and
    its conversation repaired with the repairs written back, and what a reply that never completed
    did before the agent died (None if nothing). Both ``--continue``/``--resume`` and ``/resume``."""
    transcript = Transcript(path)
    try:
        history, crashed = transcript.resume()
    except BaseException:
        transcript.close()
        raise
    return transcript, history, crashed


def clean_up_after_crashes(workspace: Path) -> Job:
    """Temporary files of writes a killed agent never finished go; while we run, ours are kept."""
    from midstream.tools.files import remove_stale_temporaries

    started = time.time()
    presence, alone = present_in(workspace)
    _held.append(presence)  # held until the process exits
    # Alone in this workspace, every leftover is stale; otherwise only the clearly old ones.
    cutoff = started if alone else started - 3600
    return LATER.run("stale-temporaries", lambda: remove_stale_temporaries(workspace, older_than=cutoff))


_held: list[object] = []


def find(workspace: Path, session_id: str | None) -> Path | None:
    """The session with this id (a plain name, never a path), or the latest that holds a conversation
    (a session left before its first message is not what ``-c`` means to pick up)."""
    if session_id is None:
        latest = list_sessions(workspace, limit=1)
        return latest[0].path if latest else None
    if not _ID.match(session_id):
        return None
    return Transcript.find(workspace, session_id)


def list_sessions(workspace: Path, limit: int = LISTED) -> list[SessionInfo]:
    """This workspace's sessions that hold a conversation, newest first."""
    found = []
    for path in Transcript.sessions(workspace):
        first = _first_message(path)
        with contextlib.suppress(OSError):  # gone since it was listed
            if first:
                found.append(SessionInfo(path, path.stem, first, path.stat().st_mtime))
        if len(found) == limit:
            break
    return found


def age(seconds: float) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def one_line(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def describe(sessions: list[SessionInfo]) -> str:
    now = time.time()
    return "\n".join(f"{n:>3}. {s.id}  {age(now - s.modified):>10}  {one_line(s.first_message)}"
                     for n, s in enumerate(sessions, start=1))


def choose(workspace: Path, ask: Callable[[str], str | None], say: Callable[[str], None]) -> Path | None:
    """List the sessions and let the person pick one by number or id; None: none chosen."""
    sessions = list_sessions(workspace)
    if not sessions:
        say(f"no earlier sessions for {workspace}")
        return None
    say(f"sessions of {workspace}, newest first:\n{describe(sessions)}")
    while True:
        answer = ask("resume which? (number or id, Enter for none): ")
        if answer is None or not answer.strip():
            return None
        answer = answer.strip()
        if answer.isdigit() and 1 <= int(answer) <= len(sessions):
            return sessions[int(answer) - 1].path
        if path := next((s.path for s in sessions if s.id == answer), None) or find(workspace, answer):
            return path
        say(f"no session {answer!r}; give a number from 1 to {len(sessions)}")


def last_exchange(history: list[dict[str, Any]]) -> list[str]:
    """The last thing the person said and the last text the model answered, one line each."""
    said = next((t for m in reversed(history) if m["role"] == "user" and (t := user_text(m))), "")
    answered = next((t for m in reversed(history) if m["role"] == "assistant"
                     and (t := "\n".join(b.get("text", "") for b in as_blocks(m["content"])
                                         if b.get("type") == "text").strip())), "")
    lines = []
    if said:
        lines.append(f"  › {one_line(said, 100)}")
    if answered:
        lines.append(f"    {one_line(answered, 100)}")
    return lines


def resumed_notice(transcript: Transcript, history: list[dict[str, Any]]) -> str:
    turns = sum(1 for m in history if m["role"] == "user" and user_text(m))
    modified = transcript.path.stat().st_mtime
    head = (f"resumed session {transcript.id} ({turns} message{'s' * (turns != 1)}, last active "
            f"{age(time.time() - modified)})")
    return "\n".join([head, *last_exchange(history)])
