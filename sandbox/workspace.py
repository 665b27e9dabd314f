"""Whether a directory can be a workspace at all: not the root or a system directory, not millions of files.

The first undo snapshot of ``/`` walks the whole machine for minutes (and every git call after it), so
such a workspace gets one clear line at start instead. The count is a bounded walk that stops at
the limit and skips the directories snapshots ignore anyway (``.git``, ``node_modules``, ``.venv`` …).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from midstream.sandbox.ignore import DEFAULT_IGNORED_DIRS

__all__ = ["FILE_LIMIT", "workspace_problem"]

FILE_LIMIT = 1_000_000  # entries outside the ignored directories
_SYSTEM = frozenset({"/", "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/var", "/proc", "/sys", "/dev", "/boot",
                     "/run", "/opt", "/home", "/tmp", "/srv", "/mnt", "/media", "/snap", "/nix"})


def _more_than(root: Path, limit: int) -> bool:
    seen, stack = 0, [root]
    skip = set(DEFAULT_IGNORED_DIRS)
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > limit:
                        return True
                    if entry.name not in skip and entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except OSError:
            continue
    return False


def workspace_problem(workspace: Path, limit: int = FILE_LIMIT) -> str | None:
    """Why ``workspace`` cannot be one (one line for the person), or None; looked at once per process."""
    return _problem(workspace.resolve(), limit)


@functools.lru_cache(maxsize=8)
def _problem(resolved: Path, limit: int) -> str | None:
    if str(resolved) in _SYSTEM:
        return (f"the workspace would be {resolved}, a system directory: midstream works in one project. "
                "Run it in the project's directory (or give --cwd DIR).")
    if _more_than(resolved, limit):
        return (f"the workspace {resolved} holds more than {limit:,} files (outside .git, node_modules, .venv …): "
                "too many to keep undoable. Run midstream in the project's own directory.")
    return None
