"""``/undo`` and ``--undo``: the last turn's applied changes taken back, and nothing else.

Undo walks the turn's record (sandbox/record.py) newest first. A path is put back only if it is
still exactly what the turn left there (its signature matches), or what a later entry of this same
undo just restored; otherwise it is reported as changed since and left alone (the person's later
edit, another session's write). What the turn replaced comes back from the stash by rename, so an
ignored or large file returns to the byte; what the turn created is moved into the stash (``undone``
copies), not destroyed. An entry whose apply was cut short by a kill (an intent without its done
line) is resolved from what is on disk: the original still in place, or in the stash.

``TurnUndo`` is what the loop holds: the record when commands run in overlays, else (no overlay
support: no bubblewrap, another kernel, ``--isolation none``) the git snapshots of
sandbox/snapshots.py, as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from midstream.sandbox.apply import move, place
from midstream.sandbox.changeset import GitView, same_bytes
from midstream.sandbox.record import Entry, UndoRecord, signature
from midstream.sandbox.snapshots import TurnSnapshots, UndoReport
from midstream.tools.startup import LATER

__all__ = ["TurnUndo", "undo_last_turn", "undo_record"]


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        if os.path.islink(a) or os.path.islink(b):
            return os.path.islink(a) and os.path.islink(b) and os.readlink(a) == os.readlink(b)
        if not (a.is_file() and b.is_file()) or a.stat().st_size != b.stat().st_size:
            return False
        return same_bytes(a, b)
    except OSError:
        return False


def _aside(path: Path, stash: Path) -> None:
    """Move what the turn left at ``path`` into the stash (kept, not destroyed)."""
    stash.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(stash):
        if stash.is_dir() and not stash.is_symlink():
            shutil.rmtree(stash)
        else:
            stash.unlink()
    move(path, stash)


def _restore(entry: Entry, target: Path, record: UndoRecord) -> str:
    stash = record.stash(entry.seq)
    aside = record.stash_dir / f"undone-{entry.seq}"
    if entry.before == "mode":
        os.chmod(target, entry.mode)
        return "mode restored"
    if entry.before == "absent":
        if os.path.lexists(target):
            _aside(target, aside)
        return "removed"
    if not os.path.lexists(stash):
        raise FileNotFoundError(f"the original of {entry.path} is missing from the undo record")
    if os.path.lexists(target):
        if not target.is_dir() or target.is_symlink():
            # The turn's version is kept (a hard link aside: freeing it here is what costs), and the original
            # replaces it in one step: the path is never missing.
            with contextlib.suppress(OSError):
                os.link(target, aside, follow_symlinks=False)
            place(stash, target)
            return "restored"
        _aside(target, aside)
    target.parent.mkdir(parents=True, exist_ok=True)
    place(stash, target)
    return "restored"


def undo_record(workspace: Path, record: UndoRecord) -> UndoReport:
    """Take back the last not-undone turn of ``record``; report each path."""
    root = workspace.resolve()
    last = record.last_turn()
    if last is None:
        return UndoReport(False, "Nothing to undo: no turn of this session changed the workspace.")
    number, entries = last
    files: list[tuple[str, str]] = []
    kept: list[str] = []
    restored_to: dict[str, Any] = {}  # path -> the signature its undone later entry says it has now
    blocked: set[str] = set()  # a path kept as the person left it: its earlier entries are not applied
    for entry in sorted(entries, key=lambda e: e.seq, reverse=True):
        target = root / entry.path
        if any(entry.path == b or entry.path.startswith(b + "/") for b in blocked):
            continue
        now = signature(target, shallow=entry.before == "mode")
        if entry.path in restored_to:
            ours = restored_to[entry.path] == entry.after
        elif entry.done:
            ours = now == entry.after
        else:  # killed between the intent and the done line
            stash = record.stash(entry.seq)
            if entry.before != "stash" or not os.path.lexists(stash):
                continue  # nothing was moved: nothing to put back
            if not os.path.lexists(target) or os.lstat(target).st_ino != os.lstat(stash).st_ino:
                ours = True  # the original went aside and the new one (or nothing) took its place
            else:
                with contextlib.suppress(OSError):
                    os.unlink(stash)  # linked, never replaced: the original is still in place
                continue
        if not ours:
            if _already_before(entry, target, record):
                restored_to[entry.path] = entry.before_sig
                continue  # a rollback already put it back
            kept.append(entry.path)
            blocked.add(entry.path)
            files.append(("kept (changed since the turn)", entry.path))
            continue
        try:
            files.append((_restore(entry, target, record), entry.path))
        except OSError as error:
            files.append((f"not restored ({error.strerror or error})", entry.path))
            blocked.add(entry.path)
            continue
        restored_to[entry.path] = entry.before_sig
    record.mark_undone(number)
    files.sort(key=lambda item: item[1])
    changed = sum(1 for what, _ in files if not what.startswith(("kept", "not")))
    message = f"Undid turn {number}: {changed} path{'s' if changed != 1 else ''} changed back."
    if kept:
        message += (f" {len(kept)} changed since the turn (a later edit, or another session) and were left as "
                    "they are.")
    return UndoReport(True, message, files)


def _already_before(entry: Entry, target: Path, record: UndoRecord) -> bool:
    """Is the path already as it was before the entry (a rollback of the attempt restored it)?"""
    if entry.before == "absent":
        return not os.path.lexists(target)
    if entry.before == "stash":
        return _same_bytes(target, record.stash(entry.seq))
    return False


class TurnUndo:
    """The session's undo as the loop holds it: the record over overlays, or git snapshots as the fallback.

    With overlays (``record`` set), a file tool's write is recorded by ``before_write``/``after_write``
    and a command's change set when it is applied; no git process runs for undo at all. Without them,
    ``before_call`` takes a snapshot before each writing call, as before.
    """

    def __init__(self, workspace: Path, session_id: str | None = None, *,
                 overlay: bool | Callable[[], bool] = False, store_root: Path | None = None) -> None:
        self.workspace = workspace.resolve()
        self.session = session_id or ("unsaved-" + secrets.token_hex(4))
        self._overlay = overlay  # decided at first use: the probe runs a sandbox, off the start-up path
        self._store_root = store_root
        self._decided: tuple[UndoRecord | None, TurnSnapshots | None] | None = None
        self._writes: dict[Path, Entry] = {}
        self._lock = threading.RLock()
        self.git = GitView(self.workspace)  # what git can give back: HEAD's listing, read once per HEAD

    def _decide(self) -> tuple[UndoRecord | None, TurnSnapshots | None]:
        with self._lock:
            if self._decided is None:
                from midstream.sandbox.overlay import store_for

                overlay = self._overlay() if callable(self._overlay) else self._overlay
                if overlay:
                    root = self._store_root or store_for(self.workspace).root
                    self._decided = (UndoRecord(root, self.session), None)
                else:
                    self._decided = (None, TurnSnapshots(self.workspace, self.session))
            return self._decided

    @property
    def record(self) -> UndoRecord | None:
        """The undo record, when commands run as transactions."""
        return self._decide()[0]

    @property
    def snapshots(self) -> TurnSnapshots | None:
        """The git snapshots, when they do not."""
        return self._decide()[1]

    def warm(self) -> None:
        """Decide (and, for snapshots, build the index) in the background, before the first message needs it."""
        def decide() -> None:
            if snapshots := self.snapshots:
                snapshots.warm()

        LATER.run("undo-decide", decide)  # once the first request is written (tools/startup.py)

    def _decided_now(self) -> tuple[UndoRecord | None, TurnSnapshots | None]:
        """What is decided so far, deciding nothing (a turn that writes nothing starts no probe) and never
        waiting for a decision under way: until it is made, no call of this turn has written through it."""
        return self._decided or (None, None)

    def begin_turn(self) -> None:
        record, snapshots = self._decided_now()  # undecided: both start a fresh turn anyway
        if record:
            record.begin_turn()
        if snapshots:
            snapshots.begin_turn()

    def before_call(self) -> None:
        """A call that may write runs outside any overlay: the fallback's snapshot."""
        if self.snapshots:
            self.snapshots.before_call()

    def end_turn(self) -> None:
        if snapshots := self._decided_now()[1]:
            snapshots.end_turn()

    def before_write(self, path: Path) -> None:
        """A file tool is about to write ``path``: keep its original (a hard link) in the record."""
        if self.record is None:
            return
        rel = str(path.resolve().relative_to(self.workspace)) if path.is_absolute() else str(path)
        target = self.workspace / rel
        with self._lock:
            exists = os.path.lexists(target) and not target.is_dir()
            [entry] = self.record.intend([(rel, "stash" if exists else "absent", signature(target),
                                           0, "file tool")])
            if exists:
                from midstream.sandbox.apply import keep_original

                keep_original(target, self.record.stash(entry.seq))
            self._writes[target] = entry

    def after_write(self, path: Path) -> None:
        """The file tool wrote ``path``: what it left there."""
        if self.record is None:
            return
        with self._lock:
            entry = self._writes.pop(self.workspace / path.resolve().relative_to(self.workspace), None)
        if entry is not None:
            entry.after = signature(self.workspace / entry.path)
            self.record.done([entry])

    def pending_note(self) -> str | None:
        """What the model must hear about undone turns, from either kind of record, deciding nothing."""
        from midstream.sandbox.overlay import store_for

        record, snapshots = self._decided_now()
        if snapshots or record is None:
            said = (snapshots or TurnSnapshots(self.workspace, self.session)).pending_note()
            if said or snapshots:
                return said
        root = self._store_root or store_for(self.workspace).root
        notes = (record.dir if record else root / "sessions" / self.session) / "notes.json"
        try:
            found = json.loads(notes.read_text())
            notes.unlink()
        except (OSError, ValueError):
            return None
        return "\n".join(found) or None

    def undo(self) -> UndoReport:
        if self.snapshots:
            return self.snapshots.undo()
        assert self.record is not None
        try:
            report = undo_record(self.workspace, self.record)
        except OSError as error:
            return UndoReport(False, f"Undo failed part way: {error}")
        if report.undone:
            summary = ", ".join(f"{what} {path}" for what, path in report.files[:50]) or "no files needed changing"
            _add_note(self.record, f"[The person undid your last turn (/undo): the workspace files it changed, by "
                                   f"file tools and shell commands alike, are back as they were before it "
                                   f"({summary}). Effects outside the workspace (network, other processes) were "
                                   "not undone. Read files again before relying on what you saw in that turn.]")
        return report


def _add_note(record: UndoRecord, note: str) -> None:
    path = record.dir / "notes.json"
    try:
        notes = json.loads(path.read_text())
    except (OSError, ValueError):
        notes = []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([*notes, note]))


def undo_last_turn(workspace: Path, session_id: str) -> UndoReport:
    """``--undo``: the session's last turn, by its record if commands ran in overlays, else its snapshots."""
    from midstream.sandbox.overlay import store_for

    record_log = store_for(workspace.resolve()).root / "sessions" / session_id / "record.jsonl"
    return TurnUndo(workspace, session_id, overlay=record_log.exists()).undo()
