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
import os
import shutil
from pathlib import Path
from typing import Any

from midstream.sandbox.record import Entry, UndoRecord, signature
from midstream.sandbox.snapshots import UndoReport

__all__ = ["undo_record"]


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        if os.path.islink(a) or os.path.islink(b):
            return os.path.islink(a) and os.path.islink(b) and os.readlink(a) == os.readlink(b)
        if not (a.is_file() and b.is_file()) or a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as x, open(b, "rb") as y:
            while True:
                p, q = x.read(1 << 20), y.read(1 << 20)
                if p != q:
                    return False
                if not p:
                    return True
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
    os.rename(path, stash)


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
            os.replace(stash, target)  # one step: the path is never missing
            return "restored"
        _aside(target, aside)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(stash, target)
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
