"""A session's undo record: what each turn changed in the workspace, path by path, and what it replaced.

Everything that changes the workspace on midstream's behalf goes through here: a change set being
applied (sandbox/apply.py) and a file tool's write (``before_write`` / ``after_write``). For each path:

- an **intent** line, written (and flushed to disk) before the path is touched: the path, what stood
  there (``absent``, or ``stash``: the original moved or hard-linked into this record's stash
  directory, so it is kept exactly, ignored and large files included) and its signature then;
- a **done** line once the new state is in place, with the signature of what the turn left there.

A signature is ``lstat`` data the kernel keeps (kind, inode, size, mtime, ctime), never a clock
reading of ours: any later write, rename or chmod of the path changes its ctime, so undo can tell
that a path is no longer what the turn left and report it instead of overwriting the person's work.
The record is append-only JSON lines, so a turn killed half way is undone up to its last intent.
Another session's record is another file: undo never reads it, and never touches a path whose
signature does not match what *this* session left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Entry", "UndoRecord", "signature"]


def signature(path: Path | str, *, shallow: bool = False) -> list[Any] | None:
    """What the kernel says a path is now (None: absent).

    A file or link: kind, inode, size, mtime, ctime and mode (any write, rename or chmod changes the
    ctime). A directory: its mode and, unless ``shallow``, every entry's name, mode, size and mtime
    (not inodes or ctimes, which our own renames into and out of the stash change: a rename keeps the
    mtime, a person's edit does not).
    """
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISDIR(info.st_mode):
        return [stat.S_IFMT(info.st_mode), info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns,
                stat.S_IMODE(info.st_mode)]
    if shallow:
        return ["dir", info.st_ino, stat.S_IMODE(info.st_mode)]
    digest = hashlib.sha256()
    for directory, subdirs, names in os.walk(path):
        subdirs.sort()
        for name in sorted(names + subdirs):
            with contextlib.suppress(OSError):
                entry = os.lstat(os.path.join(directory, name))
                kept = "" if stat.S_ISDIR(entry.st_mode) else f"{entry.st_size}\0{entry.st_mtime_ns}"
                digest.update(f"{os.path.relpath(os.path.join(directory, name), path)}\0{entry.st_mode}\0{kept}\n"
                              .encode("utf-8", "surrogateescape"))
    return ["dir", digest.hexdigest(), stat.S_IMODE(info.st_mode)]


@dataclass
class Entry:
    """One path's change within a turn."""

    turn: int
    seq: int
    path: str  # workspace-relative
    before: str  # absent | stash | mode
    before_sig: list[Any] | None
    mode: int = 0  # the old mode, for "mode"
    after: list[Any] | None = None
    done: bool = False
    source: str = ""  # what changed it: the command or the tool, for the report


@dataclass
class _Turns:
    entries: list[Entry] = field(default_factory=list)
    undone: set[int] = field(default_factory=set)


class UndoRecord:
    """The record of one session in one workspace's store."""

    def __init__(self, store_root: Path, session: str) -> None:
        self.dir = store_root / "sessions" / session
        self.stash_dir = self.dir / "stash"
        self.log = self.dir / "record.jsonl"
        self._lock = threading.Lock()
        self._turn: int | None = None  # the open turn's number, once something was recorded in it
        self._seq: int | None = None
        self._opened = False

    # -- writing ----------------------------------------------------------------------------------

    def begin_turn(self) -> None:
        """A new user message: the next change opens a new turn."""
        with self._lock:
            self._opened = False

    def _ensure(self) -> None:
        if self._seq is None:
            turns = self.read()
            self._seq = max((e.seq for e in turns.entries), default=0)
            self._turn = max([e.turn for e in turns.entries] + list(turns.undone), default=0)
        if not self._opened:
            self._turn = (self._turn or 0) + 1
            self._opened = True

    def stash(self, seq: int) -> Path:
        return self.stash_dir / str(seq)

    def intend(self, items: list[tuple[str, str, list[Any] | None, int, str]]) -> list[Entry]:
        """Record (path, before, before signature, old mode, source) for each path about to change; on disk first."""
        with self._lock:
            self._ensure()
            assert self._seq is not None and self._turn is not None
            entries = []
            for path, before, before_sig, mode, source in items:
                self._seq += 1
                entries.append(Entry(self._turn, self._seq, path, before, before_sig, mode, source=source))
            self._append([{"t": "intent", "turn": e.turn, "seq": e.seq, "path": e.path, "before": e.before,
                           "sig": e.before_sig, "mode": e.mode, "source": e.source} for e in entries])
            return entries

    def done(self, entries: list[Entry]) -> None:
        """What each path now is, as the turn left it."""
        with self._lock:
            self._append([{"t": "done", "seq": e.seq, "after": e.after} for e in entries])

    def mark_undone(self, turn: int) -> None:
        with self._lock:
            self._append([{"t": "undone", "turn": turn}])

    def _append(self, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        self.stash_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)  # the record is on disk before the workspace changes
        finally:
            os.close(fd)

    # -- reading ----------------------------------------------------------------------------------

    def read(self) -> _Turns:
        turns = _Turns()
        by_seq: dict[int, Entry] = {}
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return turns
        for line in text.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a line a kill cut short
            kind = item.get("t")
            if kind == "intent":
                entry = Entry(int(item["turn"]), int(item["seq"]), str(item["path"]), str(item["before"]),
                              item.get("sig"), int(item.get("mode") or 0), source=str(item.get("source") or ""))
                by_seq[entry.seq] = entry
                turns.entries.append(entry)
            elif kind == "done" and int(item.get("seq", -1)) in by_seq:
                found = by_seq[int(item["seq"])]
                found.after, found.done = item.get("after"), True
            elif kind == "undone":
                turns.undone.add(int(item["turn"]))
        return turns

    def last_turn(self) -> tuple[int, list[Entry]] | None:
        """The newest turn not yet undone that changed something, with its entries."""
        turns = self.read()
        numbers = sorted({e.turn for e in turns.entries} - turns.undone)
        if not numbers:
            return None
        return numbers[-1], [e for e in turns.entries if e.turn == numbers[-1]]
