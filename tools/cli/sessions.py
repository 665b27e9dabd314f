"""Sessions as the person sees them: opening or resuming one, listing this workspace's sessions,
and the notice with the last exchange that a resumed session starts with."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midstream.prompts import DATE_NOTE_PREFIX
from midstream.tools.conversation.history import as_blocks
from midstream.tools.conversation.transcript import CRASH_NOTE, Transcript, present_in
from midstream.tools.startup import LATER, Job

__all__ = ["Cancelled", "SessionInfo", "choose", "clean_up_after_crashes", "describe", "last_exchange",
           "list_sessions", "open_session", "resumed_notice", "row", "user_text"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
LISTED = 50  # sessions listed, newest first (the picker filters among them)


@dataclass(frozen=True)
class SessionInfo:
    """One session as a listing shows it: what is known of it, even when its file is damaged."""

    path: Path
    id: str
    first_message: str
    modified: float
    last_message: str = ""
    messages: int = 0  # messages the person typed (tool results and our notes are not counted)
    problem: str = ""  # what could not be read of it ("2 lines could not be read"), or ""
    said: str = ""  # what the person typed in it, joined and bounded: what a filter searches

    def summary(self) -> str:
        """``first message → last message``, or what is known when it cannot be read."""
        if not self.first_message:
            return f"(no readable message: {self.problem})" if self.problem else "(no message)"
        text = " ".join(self.first_message.split())
        if self.messages > 1 and self.last_message and self.last_message != self.first_message:
            text += " → " + " ".join(self.last_message.split())
        return text + (f" ({self.problem})" if self.problem else "")

    def counted(self) -> str:
        return f"{self.messages} msg{'s' * (self.messages != 1)}"


def user_text(message: dict[str, Any]) -> str:
    """What the person typed in a user message: text blocks, without our date note or tool results."""
    texts = [b.get("text", "") for b in as_blocks(message["content"]) if b.get("type") == "text"]
    ours = (DATE_NOTE_PREFIX, "[The person interrupted", CRASH_NOTE.partition(":")[0])  # notes we added
    return "\n".join(t for t in texts if not t.startswith(ours)).strip()


_TEXT_BLOCK = re.compile(rb'"type":\s*"text"')  # a text block, in any JSON spacing
SEARCHED = 4000  # characters of what the person typed in a session that a filter looks through


@dataclass
class _Said:
    """What the person typed in one session file, read line by line."""

    first: str = ""
    last: str = ""
    count: int = 0
    searched: list[str] = field(default_factory=list)  # the messages a filter looks through, bounded
    problem: str = ""


def _summary(path: Path, *, first_only: bool = False) -> _Said:
    """The person's messages in a session file; whatever the file holds, never an error."""
    said = _Said()
    bad = kept = 0
    try:
        with path.open("rb") as lines:
            for raw in lines:
                if not raw.endswith(b"\n"):
                    break  # a torn last line: the process died writing it, not damage
                stripped = raw.strip()
                if not stripped:
                    continue
                if not (stripped.startswith(b"{") and stripped.endswith(b"}")):
                    bad += 1
                    continue
                if b'"user"' not in raw or b'"tool_result"' in raw and not _TEXT_BLOCK.search(raw):
                    continue  # no text from the person (tool results can be large): not worth parsing
                try:
                    record = json.loads(raw.decode("utf-8"))
                    if record.get("type") != "message":
                        continue
                    message = record["message"]
                    if message["role"] != "user":
                        continue
                    text = user_text(message)
                except (ValueError, TypeError, KeyError, AttributeError):
                    bad += 1  # a line that cannot be read: the listing goes on
                    continue
                if not text:
                    continue
                said.first, said.last, said.count = said.first or text, text, said.count + 1
                if kept < SEARCHED:
                    said.searched.append(text[: SEARCHED - kept])
                    kept += len(said.searched[-1])
                if first_only:
                    break
    except OSError as error:
        said.problem = f"cannot be read: {error.strerror or error}"
        return said
    said.problem = f"{bad} line{'s' * (bad != 1)} could not be read" if bad else ""
    return said


def _first_message(path: Path) -> str:
    """The first thing the person said in a session file; whatever it holds, never an error."""
    return _summary(path, first_only=True).first


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
    if session_id is None:  # the newest with a message: a damaged file without one is not it
        return next((path for path in Transcript.sessions(workspace) if _first_message(path)), None)
    if not _ID.match(session_id):
        return None
    return Transcript.find(workspace, session_id)


def list_sessions(workspace: Path, limit: int = LISTED, *, leave_out: Path | None = None) -> list[SessionInfo]:
    """This workspace's sessions that hold a conversation (or did: a damaged one is listed with what
    is known of it), newest first; ``leave_out``: the session we are in."""
    found = []
    for path in Transcript.sessions(workspace):
        if path == leave_out:
            continue
        said = _summary(path)
        with contextlib.suppress(OSError):  # gone since it was listed
            if said.count or said.problem:
                found.append(SessionInfo(path, path.stem, said.first, path.stat().st_mtime, last_message=said.last,
                                         messages=said.count, problem=said.problem, said="\n".join(said.searched)))
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
    return flat if len(flat) <= width else flat[: max(0, width - 1)] + "…"


def row(session: SessionInfo, now: float, width: int) -> str:
    """``  5 min ago   3 msgs  first message → last message``, cut to ``width``."""
    head = f"{age(now - session.modified):>10}  {session.counted():>8}  "
    return head + one_line(session.summary(), max(10, width - len(head)))


def describe(sessions: list[SessionInfo], width: int = 100) -> str:
    """The numbered list, with each session's id (``--resume ID`` takes it)."""
    now = time.time()
    lines = []
    for n, s in enumerate(sessions, start=1):
        head = f"{n:>3}. {s.id}  "
        lines.append(head + row(s, now, width - len(head)))
    return "\n".join(lines)


class Cancelled(Exception):
    """The person left the session picker without choosing (Esc, Ctrl-C, end of input)."""


def choose(workspace: Path, ask: Callable[[str], str | None], say: Callable[[str], None], *,
           terminal: bool = False, leave_out: Path | None = None) -> Path | None:
    """Let the person pick one of this workspace's sessions; None: there is none to pick (said in one
    line). ``terminal``: a list to move through (tools/cli/picker.py); else a numbered list, where an
    empty answer takes the newest. Raises ``Cancelled`` when the person leaves it."""
    found = list_sessions(workspace, leave_out=leave_out)
    if not found:
        say(f"no earlier sessions in {workspace}")
        return None
    if terminal:
        from midstream.tools.cli.picker import pick

        picked = pick(found)
        if picked is None:
            raise Cancelled
        return picked.path
    say(f"sessions of {workspace}, newest first:\n{describe(found, _width())}")
    while True:
        answer = ask(f"resume which? (Enter: the newest; a number 1-{len(found)}, or an id): ")
        if answer is None:
            raise Cancelled
        answer = answer.strip()
        if not answer:
            return found[0].path
        if answer.isdigit() and 1 <= int(answer) <= len(found):
            return found[int(answer) - 1].path
        if path := next((s.path for s in found if s.id == answer), None):
            return path
        say(f"no session {answer!r} here: give a number from 1 to {len(found)}, an id, or Enter for the newest")


def _width() -> int:
    import shutil

    return max(40, shutil.get_terminal_size((100, 24)).columns - 1)


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
