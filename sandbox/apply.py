"""Applying a change set: the only moment a command's effects reach the workspace.

Per path, atomically, in the change set's order (a deletion before what replaces it at that path):

- **created** (a file, link or whole new tree): renamed from the upper directory into place; one
  rename for a whole new tree.
- **modified**: the original is hard-linked into the undo record's stash (the same inode: exact, at
  no copying cost), then the new file is renamed over it, so the path is never missing.
- **deleted**: renamed into the stash, a whole tree at once.
- **mode**: chmod, the old mode recorded.
- **touched**: the new times, nothing to keep.

Where the store is on another filesystem, renames become copies (a temporary beside the target,
then a rename, so a reader still sees the old file or the new one, never half of one).

A path that changed in the workspace while the command ran (its ctime is after the command's start,
as the same kernel clock stamped a marker file at the start) is a **conflict**: the workspace keeps
the person's version and the command's version is kept in the layer's ``conflicts`` directory, named
in the result. Nothing is overwritten that the command did not see.

Overlay bookkeeping (``user.overlay.*`` extended attributes) never reaches the workspace.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from midstream.sandbox.changeset import Change, ChangeSet
from midstream.sandbox.overlay import Layer
from midstream.sandbox.record import Entry, UndoRecord, signature

__all__ = ["Applied", "apply_changes", "keep_original", "move", "place", "start_stamp"]


@dataclass
class Applied:
    """What applying did."""

    applied: list[str] = field(default_factory=list)
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (path, where the command's version is kept)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    def lines(self) -> list[str]:
        said = [f"conflict: {p} changed in the workspace while the command ran; kept as it is, the command's "
                f"version is at {kept}" for p, kept in self.conflicts]
        return said + [f"not applied: {p}: {why}" for p, why in self.failed]


def start_stamp(layer: Layer) -> int:
    """The kernel's clock now, as a file's ctime on the store's filesystem (no clock of ours)."""
    marker = layer.dir / "started"
    marker.touch()
    return os.lstat(marker).st_ctime_ns


@contextlib.contextmanager
def _workspace_lock(store_root: Path) -> Iterator[None]:
    """One change set applied at a time in a workspace, across sessions."""
    with open(store_root / "apply.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def apply_changes(changes: ChangeSet, layer: Layer, workspace: Path, record: UndoRecord, since_ns: int,
                  source: str = "") -> Applied:
    """Put the command's changes into the workspace, keeping what they replace in ``record``."""
    root = workspace.resolve()
    done = Applied()
    with _workspace_lock(layer.dir.parent.parent):
        plan: list[Change] = []
        for change in changes.changes:
            target = root / change.path
            if change.kind == "touched":
                with contextlib.suppress(OSError):
                    info = os.lstat(layer.upper / change.path)
                    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)
                continue
            if _conflicts(change, target, since_ns, plan):
                done.conflicts.append((change.path, _keep_theirs(layer, change)))
                continue
            plan.append(change)
        items = [(c.path, _before(c), _before_signature(c, root), c.old_mode, source) for c in plan]
        entries = record.intend(items)
        finished: list[Entry] = []
        real: dict[str, bool] = {}
        for change, entry in zip(plan, entries, strict=True):
            if not _parents_real(root, change.path, real):
                done.failed.append((change.path, "a directory on its path is no longer a directory (a link now?); "
                                                 "nothing was written through it"))
                continue
            try:
                _apply_one(change, entry, layer, root, record)
            except OSError as error:
                done.failed.append((change.path, error.strerror or str(error)))
                continue
            entry.after = signature(root / change.path, shallow=change.kind == "mode")
            finished.append(entry)
            done.applied.append(change.path)
        record.done(finished)
    return done


def _parents_real(root: Path, rel: str, known: dict[str, bool]) -> bool:
    """Is every directory on the way to ``rel`` a real directory, no link? A rename must never land
    outside the workspace because a directory was swapped for a link after the command ran."""
    parts = rel.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        if prefix not in known:
            info = _lstat(root / prefix)
            known[prefix] = info is not None and stat.S_ISDIR(info.st_mode)
        if not known[prefix]:
            return False
    return True


def _before_signature(change: Change, root: Path) -> list | None:
    """What stood at the path just before this change: nothing, for a creation (a deletion came first)."""
    return None if change.kind == "created" else signature(root / change.path, shallow=change.kind == "mode")


def _before(change: Change) -> str:
    if change.kind == "mode":
        return "mode"
    return "absent" if change.kind == "created" else "stash"


def _replacing(change: Change, plan: list[Change]) -> bool:
    return any(c.path == change.path and c.kind == "deleted" for c in plan)


def _conflicts(change: Change, target: Path, since_ns: int, plan: list[Change]) -> bool:
    """Did the workspace's path change while the command ran?"""
    if change.kind == "created":
        replaced = _replacing(change, plan)
        exists = os.path.lexists(target)
        return exists and not replaced  # something appeared where the command created a new path
    info = _lstat(target)
    if info is None:
        return True  # gone meanwhile: the command's change no longer applies to anything
    if change.tree:
        return any(i.st_ctime_ns > since_ns for i in _tree_stats(target))
    return info.st_ctime_ns > since_ns


def _tree_stats(path: Path) -> Iterator[os.stat_result]:
    for directory, subdirs, names in os.walk(path):
        for name in [".", *subdirs, *names]:
            info = _lstat(Path(directory, name))
            if info is not None:
                yield info


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _keep_theirs(layer: Layer, change: Change) -> str:
    """Move the command's version of a conflicting path aside, out of the layer that is removed later."""
    source = layer.upper / change.path
    kept = layer.dir.parent.parent / "conflicts" / layer.dir.name / change.path
    if change.kind == "deleted" or not os.path.lexists(source):
        return "(the command deleted it)"
    kept.parent.mkdir(parents=True, exist_ok=True)
    _move(source, kept)
    return str(kept)


def _apply_one(change: Change, entry: Entry, layer: Layer, root: Path, record: UndoRecord) -> None:
    target = root / change.path
    source = layer.upper / change.path
    if change.kind == "mode":
        if not os.path.islink(target):
            os.chmod(target, change.new_mode)
        return
    if change.kind == "deleted":
        _move(target, record.stash(entry.seq))
        return
    _clean(source)
    if change.kind == "modified":
        keep_original(target, record.stash(entry.seq))
    place(source, target)


def keep_original(target: Path, stash: Path) -> None:
    """The original's inode into the stash: a hard link, or a copy where links cannot be made."""
    stash.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(target, stash, follow_symlinks=False)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        _copy(target, stash)


def place(source: Path, target: Path) -> None:
    """``source`` at ``target`` (replacing a file there), in one step a reader cannot see half of."""
    try:
        os.rename(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        temporary = target.with_name(f".{target.name}.midstream-apply")
        _copy(source, temporary)
        os.rename(temporary, target)
        _remove(source)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def move(source: Path, target: Path) -> None:
    """Rename, or copy and remove across filesystems."""
    _move(source, target)


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        _copy(source, target)
        _remove(source)


def _copy(source: Path, target: Path) -> None:
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)


def _clean(path: Path) -> None:
    """Drop the overlay's own extended attributes from what is about to enter the workspace."""
    targets = [str(path)]
    if path.is_dir() and not path.is_symlink():
        for directory, subdirs, names in os.walk(path):
            targets += [os.path.join(directory, n) for n in subdirs + names]
    for item in targets:
        with contextlib.suppress(OSError):
            for name in os.listxattr(item, follow_symlinks=False):
                if name.startswith("user.overlay."):
                    os.removexattr(item, name, follow_symlinks=False)
            info = os.lstat(item)
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                os.unlink(item)  # a whiteout inside a new tree hides nothing: never into the workspace
