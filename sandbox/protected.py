"""The one list of protected paths: what no tool and no command may change, even in a writable workspace.

Read by the file tools (``paths.confine``), the sandbox (``isolation``: bound read-only, or pinned
when missing) and the settings (the project's settings file lives in ``CONFIG_DIR``). Version-control
directories are protected at any depth, found afresh on every call: a nested repository created by
one command is protected from the next one on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

__all__ = ["CONFIG_DIR", "NESTED", "ROOT_ONLY", "Guarded", "nested_repositories", "protected_name", "protected_paths"]

CONFIG_DIR = ".midstream"  # midstream's own per-workspace configuration

# Directories whose contents a program runs on its next use: protected wherever they appear.
NESTED: dict[str, str] = {
    ".git": "git's config and hooks: a planted core.fsmonitor, filter or hook runs on the next git call",
    ".hg": "Mercurial's hgrc: its [hooks] run on the person's next hg status",
    ".jj": "Jujutsu's repository config and the git store it wraps",
}
# Files and directories that matter only at the workspace root.
ROOT_ONLY: dict[str, str] = {
    ".gitmodules": "submodule URLs and update commands (update=!cmd runs on git submodule update)",
    CONFIG_DIR: "midstream's own project settings and approvals",
}

# Directories never walked for nested repositories: large, generated, and not where a person keeps one.
_SKIP = frozenset({"node_modules", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache", ".tox",
                   "target", ".ruff_cache"})
_SCAN_LIMIT = 200_000  # directory entries looked at per call, at most


class Guarded(NamedTuple):
    """One protected path and the one-line reason it is protected (unpacks as ``path, reason``)."""

    path: Path
    reason: str


def protected_name(relative: tuple[str, ...]) -> str | None:
    """The reason a workspace-relative path is protected, or None: ``.git`` anywhere, ``.gitmodules`` at the root."""
    for part in relative:
        if part in NESTED:
            return NESTED[part]
    if relative[:1] and relative[0] in ROOT_ONLY:
        return ROOT_ONLY[relative[0]]
    return None


def nested_repositories(workspace: Path) -> list[Path]:
    """Every ``.git``, ``.hg`` and ``.jj`` below the workspace root, looked for now (a bounded walk)."""
    found: list[Path] = []
    seen = 0
    stack = [workspace]
    while stack and seen < _SCAN_LIMIT:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                listed = list(entries)
        except OSError:
            continue
        seen += len(listed)
        for entry in listed:
            if entry.name in NESTED:
                if directory != workspace:
                    found.append(Path(entry.path))
                continue
            if entry.name not in _SKIP and entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return sorted(found)


def protected_paths(workspace: Path) -> list[Guarded]:
    """Every protected path of ``workspace`` now, root ones first (missing ones too: they get pinned)."""
    root = workspace.resolve()
    paths = [Guarded(root / name, reason) for name, reason in {**NESTED, **ROOT_ONLY}.items()]
    paths += [Guarded(path, f"a nested repository: {NESTED[path.name]}") for path in nested_repositories(root)]
    return paths
