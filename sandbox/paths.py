"""Workspace confinement: every path a tool touches must resolve to a place inside the workspace.

Resolve first (symlinks included), then ``relative_to(root)``: a path that textually looks
inside but resolves outside (a symlink, ``a/../../x``) is refused like any other escape.
"""

from __future__ import annotations

import os
from pathlib import Path

from midstream.sandbox.protected import protected_name

__all__ = ["OutsideWorkspace", "confine", "display_path"]


class OutsideWorkspace(PermissionError):
    """A path left the workspace. This is a policy boundary, not a transient failure."""


def _refuse(path: str, why: str) -> OutsideWorkspace:
    return OutsideWorkspace(
        f"Refused by the workspace policy: '{path}' {why}. Tools may only touch files inside the "
        "workspace; this is a policy boundary, not an error to retry. Use a path relative to the "
        "workspace root."
    )


def confine(workspace: Path, path: str, *, for_write: bool = False) -> Path:
    """Return the resolved path inside ``workspace`` or raise ``OutsideWorkspace``."""
    if "\0" in path:
        raise _refuse(path.replace("\0", "\\0"), "contains a NUL byte")
    if path.startswith("~"):
        raise _refuse(path, "starts with '~' (a home directory is outside the workspace)")
    root = workspace.resolve()
    resolved = (root / path).resolve()  # absolute paths replace root here, and are then checked
    try:
        relative = resolved.relative_to(root)
    except ValueError:
        raise _refuse(path, "resolves outside the workspace") from None
    if for_write and (why := protected_name(relative.parts)):
        raise _refuse(path, f"is protected ({why}); it is the person's to change: tell them what you would change")
    return resolved


def display_path(workspace: Path, path: Path) -> str:
    """A short path for messages: relative to the workspace where possible."""
    try:
        return str(path.relative_to(workspace.resolve())) or "."
    except ValueError:
        return os.fspath(path)
