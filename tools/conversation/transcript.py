"""Session transcripts: one append-only JSONL file per session, fsynced at every commit.

Lines are ``{"type": "session", …}`` (the header), ``{"type": "message", "message": {…}}`` (one
committed Messages API message) and ``{"type": "note", …}`` (what the person was shown besides:
rollbacks, interrupts). Long sessions add ``{"type": "cleared", "notes": {tool_use_id: note}}`` (old
tool results replaced by notes) and ``{"type": "compaction", "messages": […]}`` (the whole history
from then on: the summary and the messages kept verbatim); the messages before stay in the file, and
loading replays both (tools/conversation/compaction.py). Loading skips a torn last line, merges
consecutive messages of one role (tool results and the next user text are written separately) and
answers any tool_use left without a result, so a session killed in the middle of a tool resumes as a
valid conversation.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from midstream.sandbox.private import private_file
from midstream.tools.conversation.history import answer_unfinished_tools, as_blocks

__all__ = ["Transcript", "state_dir"]

AGENT_EXITED = "The agent exited before this tool finished; its outcome is unknown. Check before running it again."


def state_dir() -> Path:
    """Where sessions and logs live: $XDG_STATE_HOME/midstream, by default ~/.local/state/midstream."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "midstream"


def _sessions_of(workspace: Path) -> Path:
    resolved = str(workspace.resolve())
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:12]
    return state_dir() / "sessions" / f"{workspace.resolve().name or 'root'}-{digest}"


class Transcript:
    """An open session file; ``append`` returns only once the line is on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.id = path.stem
        self._file = os.fdopen(private_file(path), "a", encoding="utf-8")

    @classmethod
    def create(cls, workspace: Path, model: str) -> Transcript:
        session_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        transcript = cls(_sessions_of(workspace) / f"{session_id}.jsonl")
        transcript._write({"type": "session", "id": session_id, "workspace": str(workspace.resolve()),
                           "model": model, "started": time.time()})
        return transcript

    @classmethod
    def find(cls, workspace: Path, session_id: str | None = None) -> Path | None:
        """The given session of this workspace, or its latest one."""
        directory = _sessions_of(workspace)
        if session_id:
            path = directory / f"{session_id}.jsonl"
            return path if path.exists() else None
        sessions = cls.sessions(workspace)
        return sessions[0] if sessions else None

    @staticmethod
    def sessions(workspace: Path) -> list[Path]:
        """This workspace's session files, the most recently written first."""
        found = _sessions_of(workspace).glob("*.jsonl")
        return sorted(found, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)

    @staticmethod
    def load(path: Path) -> list[dict[str, Any]]:
        """The committed conversation of a session, repaired into a valid one."""
        messages: list[dict[str, Any]] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn line: the process died while writing it
            if record.get("type") == "compaction":
                messages = [dict(m) for m in record.get("messages", [])]
                continue
            if record.get("type") == "cleared":
                from midstream.tools.conversation.clearing import apply_cleared

                apply_cleared(messages, record.get("notes", {}))
                continue
            if record.get("type") != "message":
                continue
            message = record["message"]
            if messages and messages[-1]["role"] == message["role"]:
                messages[-1] = {"role": message["role"],
                                "content": as_blocks(messages[-1]["content"]) + as_blocks(message["content"])}
            else:
                messages.append(message)
        answer_unfinished_tools(messages, AGENT_EXITED)
        return messages

    def append(self, message: dict[str, Any]) -> None:
        self._write({"type": "message", "message": message})

    def record(self, kind: str, **details: Any) -> None:
        """A record of its own type: ``cleared`` and ``compaction`` rewrite the history on load."""
        self._write({"type": kind, **details})

    def note(self, kind: str, **details: Any) -> None:
        self._write({"type": "note", "kind": kind, **details})

    def close(self) -> None:
        self._file.close()

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
