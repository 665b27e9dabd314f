"""Programs midstream runs itself (git, bwrap, sh, prlimit), resolved once to paths no command can write.

A ``PATH`` entry inside the workspace (``./.venv/bin``, ``node_modules/.bin``, direnv's additions),
a relative one, or one under a directory a sandboxed command may write is skipped: a ``git`` or a
``bwrap`` planted there by a command would otherwise run on the host, unconfined, with midstream's
environment. The first answer for each name is kept for the whole process, so a program planted
later is never picked up.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["pin_workspace", "resolve", "untrusted_dirs"]

_lock = threading.Lock()
_found: dict[str, str | None] = {}
_untrusted: list[Path] = []


def pin_workspace(workspace: Path) -> None:
    """Name a directory commands may write (the workspace): PATH entries inside it are never used."""
    with _lock:
        _untrusted.append(workspace.resolve())


def untrusted_dirs() -> list[Path]:
    """Directories whose programs midstream never runs itself."""
    from midstream.sandbox.hostview import package_cache_root

    return [*_untrusted, package_cache_root()]


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _search(name: str) -> str | None:
    bad = untrusted_dirs()
    for entry in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not entry or not os.path.isabs(entry):
            continue
        directory = Path(entry).resolve()
        if any(_inside(directory, root) for root in bad):
            continue
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            real = candidate.resolve()
            if not any(_inside(real, root) for root in bad):
                return str(real)
    return None


def resolve(name: str) -> str | None:
    """The absolute path of ``name`` found outside every untrusted directory, the same for the whole process."""
    with _lock:
        if name not in _found:
            _found[name] = _search(name)
        return _found[name]
