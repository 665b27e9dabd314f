"""Session transcripts: one append-only JSONL file per session, fsynced at every commit.

Lines are ``{"type": "session", …}`` (the header), ``{"type": "message", "message": {…}}`` (one
committed Messages API message) and ``{"type": "note", …}`` (what the person was shown besides:
rollbacks, interrupts, and what a reply that has not completed yet is doing: ``call_started``,
``call_finished``, ``file_changed``). Only messages that passed the commit guard are written. Long
sessions add ``{"type": "cleared", "notes": {tool_use_id: note}}`` (old tool results replaced by
notes) and ``{"type": "compaction", "messages": […]}`` (the whole history from then on: the summary
and the messages kept verbatim); the messages before stay in the file, and loading replays both
(tools/conversation/compaction.py). Loading merges consecutive messages of one role (tool results
and the next user text are written separately).

A session can never be bricked:

- Opening a transcript takes its lock (``flock`` on a ``.lock`` file beside it, released by the
  kernel however the process dies): a second agent continuing the same session is refused with a
  message naming the process that has it, instead of interleaving two conversations in one file.
- Opening truncates a torn last line (the process died while writing it), so the next record is
  not glued to it.
- Reading skips what cannot be read: a line that is not UTF-8 or not JSON, a record of the wrong
  shape (a message without a role, content that is a number). ``resume()`` says how many lines it
  skipped and writes the readable history back as one ``compaction`` record, so the next resume
  starts after them and the person is told once.
- ``resume()`` repairs the conversation into a valid one (``repair_history``) and writes the
  repairs back, so the next load starts from the repaired state; it also tells the model and the
  person what a reply that never completed had done (calls started, files changed) before the crash.
  A repair that only adds is appended; any other is written as one ``compaction`` record (reason
  ``repaired``) holding the repaired history, so the file is only ever appended to.

Session files, their locks and the prompt history are private (0600 in 0700 directories).

The state directory may fail under us (read-only, full, a file where a directory should be): every
such failure is a :class:`StateError` naming the path and what to do, and a write that fails is
cut back to where it began, so the file holds whole lines only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from midstream.sandbox.private import private_file
from midstream.tools.conversation.history import as_blocks, repair_history

__all__ = ["CrashRecord", "SessionInUse", "StateError", "Transcript", "present_in", "read_records", "state_dir",
           "state_error"]

AGENT_EXITED = "The agent exited before this tool finished; its outcome is unknown. Check before running it again."
FINISHED_LOST = ("This tool finished before the agent exited, but its result was lost with the agent. Check what "
                 "it did before running it again.")
CRASH_NOTE = ("[Before the agent exited, a reply that never completed had already acted: {what}. "
              "Check the workspace before relying on it.]")


class SessionInUse(RuntimeError):
    """Another agent has this session open."""


class StateError(RuntimeError):
    """The state directory cannot be written; ``str()`` is the one line shown to the person."""


def state_error(error: OSError, path: Path | str | None = None) -> StateError:
    """``error`` (met under the state directory) as the line that says where and what to do."""
    where = path or error.filename or state_dir()
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space there, or set XDG_STATE_HOME to a directory on another disk"
    elif error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "make it writable, or set XDG_STATE_HOME to a directory that is"
    elif error.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        hint = "something else is in the way there: move it, or set XDG_STATE_HOME to another directory"
    else:
        hint = "check it, or set XDG_STATE_HOME to another directory"
    return StateError(f"cannot write midstream's state at {where} ({error.strerror or error}): {hint}. "
                      "Nothing of the conversation was lost.")

def state_dir() -> Path:
    """Where sessions and logs live: $XDG_STATE_HOME/midstream, by default ~/.local/state/midstream."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "midstream"


def _sessions_of(workspace: Path) -> Path:
    resolved = workspace.resolve()
    digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:12]  # a name that is not UTF-8 as its bytes
    return state_dir() / "sessions" / f"{workspace.resolve().name or 'root'}-{digest}"


def present_in(workspace: Path) -> tuple[Any, bool]:
    """Say this process works in ``workspace`` for as long as the returned file is open, and whether
    it is the only midstream there (then every temporary file of an interrupted write is stale)."""
    directory = _sessions_of(workspace)
    try:
        handle = os.fdopen(private_file(directory / ".present", os.O_RDWR | os.O_CREAT), "r+")
    except OSError as error:
        raise state_error(error) from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        alone = True
    except BlockingIOError:
        alone = False
    fcntl.flock(handle.fileno(), fcntl.LOCK_SH)  # (from exclusive: a conversion, never a wait)
    return handle, alone


class Transcript:
    """An open, locked session file; ``append`` returns only once the line is on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.id = path.stem
        try:
            self._lock_file = _lock(path)
        except OSError as error:
            raise state_error(error) from None
        try:
            _truncate_torn_line(path)
            self._fd = private_file(path)
        except BaseException as error:
            self._lock_file.close()
            if isinstance(error, OSError) and error.errno != errno.EISDIR:  # a directory: not the state's fault
                raise state_error(error) from None
            raise
        self._write_lock = threading.Lock()  # tools note their progress from worker threads

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
        """This workspace's session files, the most recently written first (what is no file is left out)."""
        found = []
        for path in _sessions_of(workspace).glob("*.jsonl"):
            with contextlib.suppress(OSError):
                if path.is_file():
                    found.append((path.stat().st_mtime, path.name, path))
        return [path for *_, path in sorted(found, reverse=True)]

    @staticmethod
    def load(path: Path) -> list[dict[str, Any]]:
        """The committed conversation of a session, repaired into a valid one."""
        records = read_records(path)[0]
        return repair_history(_replayed(records), _unanswered(records))

    def resume(self) -> tuple[list[dict[str, Any]], str | None]:
        """The conversation, repaired into a valid one with the repairs written back, and a line for
        the person saying what an uncompleted reply did before the agent died, or which lines could
        not be read (None if nothing)."""
        records, skipped = read_records(self.path)
        written = _replayed(records)
        repaired = repair_history(written, _unanswered(records))
        crashed = _uncompleted_work(records)
        if crashed:
            note = {"type": "text", "text": CRASH_NOTE.format(what=crashed)}
            if repaired and repaired[-1]["role"] == "user":
                repaired[-1] = {**repaired[-1], "content": [*repaired[-1]["content"], note]}
            else:  # nothing to attach it to yet: the person's next message will follow it
                repaired.append({"role": "user", "content": [note]})
        if skipped:  # written back whole: the next resume starts after the lines that could not be read
            self.record("compaction", messages=repaired, reason="unreadable", skipped=skipped, at=time.time())
        elif repaired != written:
            self._write_back(written, repaired)
        if crashed:
            self.note("crash_reported", what=crashed)
        lines = [f"before the agent exited, a reply that never completed had {crashed}"] if crashed else []
        if skipped:
            lines.append(f"{skipped} line{'s' * (skipped != 1)} of session {self.id} could not be read (bytes that "
                         f"are not UTF-8, or records of the wrong shape) and were skipped; the rest is resumed "
                         f"({self.path})")
        return repaired, "; ".join(lines) or None

    def _write_back(self, written: list[dict[str, Any]], repaired: list[dict[str, Any]]) -> None:
        """Append what the repair added when it only added; otherwise append the repaired history as
        one ``compaction`` record (replayed by ``load`` like any compaction; one line, so a crash
        while writing it leaves a torn line that the next open cuts, and the old state stands)."""
        grown = len(repaired) >= len(written) and all(
            a == b for a, b in zip(written[:-1], repaired, strict=False))
        if grown and written:
            last, new = written[-1], repaired[len(written) - 1]
            grown = new["role"] == last["role"] and new["content"][: len(last["content"])] == last["content"]
        if grown:
            if written and len(repaired[len(written) - 1]["content"]) > len(written[-1]["content"]):
                extra = repaired[len(written) - 1]["content"][len(written[-1]["content"]):]
                self.append({"role": repaired[len(written) - 1]["role"], "content": extra})
            for message in repaired[len(written):]:
                self.append(message)
            return
        self.record("compaction", messages=repaired, reason="repaired", at=time.time())

    def append(self, message: dict[str, Any]) -> None:
        self._write({"type": "message", "message": message})

    def record(self, kind: str, **details: Any) -> None:
        """A record of its own type: ``cleared`` and ``compaction`` rewrite the history on load."""
        self._write({"type": kind, **details})

    def note(self, kind: str, **details: Any) -> None:
        """A note of what happened (a call started, finished, changed a file): written at once, so a killed
        process leaves it on disk, but not forced to the device: the next message's fsync carries it, and
        five parallel calls would otherwise queue ten fsyncs between one answer and the next request."""
        self._write({"type": "note", "kind": kind, **details}, durable=False)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._lock_file.close()  # releases the session lock

    def _write(self, record: dict[str, Any], *, durable: bool = True) -> None:
        text = json.dumps(record, ensure_ascii=False) + "\n"
        try:
            line = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (a path that is not UTF-8): escaped, as JSON allows
            line = (json.dumps(record) + "\n").encode("ascii")
        with self._write_lock:
            start = os.lseek(self._fd, 0, os.SEEK_END)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view):]
                if durable:
                    os.fsync(self._fd)
            except OSError as error:
                with contextlib.suppress(OSError):  # whole lines only: the failed one is cut away
                    os.ftruncate(self._fd, start)
                raise state_error(error, self.path) from None


class CrashRecord:
    """Notes in the transcript, as it happens, what a call of a not yet committed reply does, so a
    session resumed after a crash can say what ran (``resume`` reads them back)."""

    def __init__(self, transcript: Transcript | None, call_id: str, what: str, workspace: Path) -> None:
        self._transcript, self._id, self._what, self._workspace = transcript, call_id, what[:300], workspace

    def started(self) -> None:
        if self._transcript:
            self._transcript.note("call_started", id=self._id, what=self._what)

    def finished(self, error: bool) -> None:
        if self._transcript:
            self._transcript.note("call_finished", id=self._id, error=error)

    def file_changed(self, path: Path) -> None:
        if self._transcript:
            with contextlib.suppress(ValueError):
                path = path.relative_to(self._workspace.resolve())
            self._transcript.note("file_changed", id=self._id, path=str(path))


def _lock(path: Path) -> Any:
    """Hold the session's lock for as long as the returned file is open."""
    lock_path = path.with_name(path.name + ".lock")
    handle = os.fdopen(private_file(lock_path, os.O_RDWR | os.O_CREAT), "r+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise SessionInUse(f"session {path.stem} is open in another midstream ({holder}); finish or quit "
                           "that one first, or start a new session without --continue/--resume") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def _truncate_torn_line(path: Path) -> None:
    """Cut a last line without its newline: the process died while writing it."""
    with contextlib.suppress(FileNotFoundError), os.fdopen(
            os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC), "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        position = size
        while position > 0:  # find the last newline, reading backwards in blocks
            step = min(65536, position)
            f.seek(position - step)
            block = f.read(step)
            newline = block.rfind(b"\n")
            if newline != -1:
                f.truncate(position - step + newline + 1)
                return
            position -= step
        f.truncate(0)


def read_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The readable records of a session file, and how many lines after its last compaction could
    not be read (not UTF-8, not JSON, or a record of the wrong shape). A torn last line is not
    counted: the process died while writing it."""
    records: list[dict[str, Any]] = []
    skipped = 0
    lines = path.read_bytes().split(b"\n")
    del lines[-1:]  # after the last newline: nothing, or a line cut short (cut at the next open)
    for raw in lines:
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError included
            record = None
        if not _well_formed(record):
            skipped += 1
            continue
        assert isinstance(record, dict)
        if record.get("type") == "compaction":
            skipped = 0  # what came before is replaced: not the person's concern any more
        elif record.get("type") == "message" and isinstance(content := record["message"]["content"], list) and any(
                not isinstance(b, dict) for b in content):
            skipped += 1  # its blocks that are no objects go; the rest of the message stays
            kept = [b for b in content if isinstance(b, dict)]
            record = {**record, "message": {**record["message"], "content": kept}}
        records.append(record)
    return records, skipped


def _well_formed(record: Any) -> bool:
    """Can this record be replayed as it is (bad blocks inside a message are the repair's to drop)?"""
    if not isinstance(record, dict):
        return False
    match record.get("type"):
        case "message":
            message = record.get("message")
            return (isinstance(message, dict) and message.get("role") in ("user", "assistant")
                    and isinstance(message.get("content"), str | list))
        case "compaction":
            return isinstance(record.get("messages"), list)
        case "cleared":
            return isinstance(record.get("notes"), dict)
    return True  # notes and the header: read by what knows them, never replayed


def _replayed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation the records say, before repair: messages in order (consecutive ones of one
    role merged), a ``compaction`` record replacing everything before it, a ``cleared`` record
    replacing old tool results by notes. New lists and dicts throughout: nothing here edits a record."""
    from midstream.tools.conversation.clearing import apply_cleared

    merged: list[dict[str, Any]] = []
    for record in records:
        kind = record.get("type")
        if kind == "compaction":
            merged = [{**m, "content": as_blocks(m.get("content"))} for m in record.get("messages", [])
                      if isinstance(m, dict)]
            continue
        if kind == "cleared":
            notes = record.get("notes")
            if isinstance(notes, dict):
                apply_cleared(merged, notes)
            continue
        if kind != "message":
            continue
        message = record["message"]
        if merged and merged[-1].get("role") == message.get("role"):
            merged[-1] = {"role": message["role"],
                          "content": as_blocks(merged[-1]["content"]) + as_blocks(message.get("content"))}
        else:
            merged.append({**message, "content": as_blocks(message.get("content"))})
    return merged


def _unanswered(records: list[dict[str, Any]]) -> Callable[[str], str]:
    """What a call left without a result is answered with: lost, if its call_finished note is on disk."""
    finished = {str(r.get("id")) for r in records if r.get("type") == "note" and r.get("kind") == "call_finished"}
    return lambda call_id: FINISHED_LOST if call_id in finished else AGENT_EXITED


def _uncompleted_work(records: list[dict[str, Any]]) -> str:
    """What calls and file changes of a reply that never completed were recorded (empty: none).

    A call whose tool_use was committed belongs to a reply that completed (its notes may come
    before or after that commit: tools run on their own threads); its outcome is in the history.
    """
    committed: set[str] = set()
    calls: dict[str, dict[str, Any]] = {}
    files: dict[str, str] = {}  # path -> the call that changed it
    for record in records:
        kind = record.get("type") == "note" and record.get("kind")
        call_id = str(record.get("id"))
        messages = [record["message"]] if record.get("type") == "message" else [
            m for m in record.get("messages", []) if isinstance(m, dict)] if record.get("type") == "compaction" else []
        for message in messages:
            if message.get("role") == "assistant":
                committed.update(str(b.get("id")) for b in as_blocks(message.get("content"))
                                 if isinstance(b, dict) and b.get("id"))
        if messages:
            continue
        if kind in ("rolled_back", "crash_reported", "interrupted"):
            calls.clear()
            files.clear()
        elif kind == "call_started":
            calls[call_id] = {"what": str(record.get("what", "")), "finished": False}
        elif kind == "call_finished" and call_id in calls:
            calls[call_id]["finished"] = True
        elif kind == "file_changed":
            files.setdefault(str(record.get("path")), call_id)
    calls = {i: c for i, c in calls.items() if i not in committed}
    changed = [path for path, call_id in files.items() if call_id not in committed]
    parts = []
    if calls:
        parts.append("started " + "; ".join(
            f"{c['what']} ({'finished' if c['finished'] else 'outcome unknown'})" for c in calls.values()))
    if changed:
        parts.append("changed " + ", ".join(changed))
    return " and ".join(parts)
