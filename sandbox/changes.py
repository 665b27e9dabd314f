"""Which files in the workspace changed since a moment: what an interrupted command already did.

Chosen: modification and status-change times (``st_mtime_ns``, ``st_ctime_ns``), read after the
fact, rather than hashes taken before every command. It costs nothing until it is needed, and the
ctime catches renames and mode changes too. Its limits, stated in every report: a deleted file has
no time to compare, and a tool that restores old timestamps on purpose hides its change.
Git's own directory is included (summarised), because an interrupted ``git commit`` that did write
its objects and refs is exactly what the person must be told about.
"""

from __future__ import annotations

import os
from pathlib import Path

from midstream.sandbox.ignore import DEFAULT_IGNORED_DIRS

__all__ = ["changed_since", "describe_changes"]

MAX_FILES = 50_000
_SKIP = set(DEFAULT_IGNORED_DIRS) - {".git"}


def changed_since(workspace: Path, since_ns: int) -> list[str]:
    """Workspace-relative paths whose mtime or ctime is at or after ``since_ns``, sorted."""
    root = workspace.resolve()
    changed: list[str] = []
    seen = 0
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in _SKIP]
        for name in files:
            seen += 1
            if seen > MAX_FILES:
                return changed
            path = os.path.join(directory, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if max(info.st_mtime_ns, info.st_ctime_ns) >= since_ns:
                changed.append(os.path.relpath(path, root).replace(os.sep, "/"))
    return sorted(changed)


def describe_changes(paths: list[str], limit: int = 20) -> str:
    """``a.py, b.py, .git/ (7 files: COMMIT_EDITMSG, index, logs/HEAD …)`` or ``none``."""
    if not paths:
        return "none found (compared by modification time; deleted files cannot be detected)"
    git = [p[5:] for p in paths if p.startswith(".git/")]
    work = [p for p in paths if not p.startswith(".git/")]
    parts = work[:limit] + ([f"… and {len(work) - limit} more"] if len(work) > limit else [])
    if git:
        named = [p for p in git if not p.startswith("objects/")][:4]
        parts.append(f".git/ ({len(git)} files: {', '.join(named)}{' …' if len(git) > len(named) else ''})")
    return ", ".join(parts) + " (compared by modification time; deleted files cannot be detected)"
