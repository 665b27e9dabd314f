"""Where a ``.git`` really is: a directory, or a pointer file a repository (or a command) wrote."""

from __future__ import annotations

import contextlib
from pathlib import Path

from midstream.sandbox import fdio

__all__ = ["git_dir", "pointed_dirs"]

_SYSTEM = (Path("/proc"), Path("/sys"), Path("/dev"))


def _small_text(path: Path) -> str:
    """A small regular file's text; "" for anything else (a FIFO named .git must not hang us)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        found = fdio.read_bytes(path.parent.resolve() / path.name)
        if found is not None and len(found[0]) < 4096:
            return found[0].decode("utf-8")
    return ""


def git_dir(path: Path) -> Path | None:
    """``path`` resolved, if it is a git directory we may bind: never "/", /proc, /sys or /dev.

    A ``.git`` pointer file or symlink is data a repository (or a command) wrote; binding where it
    points, unchecked, could show the host's /proc inside the sandbox.
    """
    real = path.resolve()
    if real == Path("/") or any(real == top or top in real.parents for top in _SYSTEM):
        return None
    if real.is_dir() and (real / "HEAD").is_file() and (real / "objects").is_dir() or (real / "commondir").is_file():
        return real
    return None


def pointed_dirs(dot_git: Path) -> list[Path]:
    """A ``.git`` pointer file's target and the common dir it shares with the main repository."""
    text = _small_text(dot_git) if dot_git.is_file() and not dot_git.is_symlink() else ""
    if not text.startswith("gitdir:"):
        return []
    target = git_dir(dot_git.parent / text[len("gitdir:"):].strip())
    if target is None:
        return []
    common = _small_text(target / "commondir").strip()
    shared = git_dir(target / common) if common else None
    return [target] + ([shared] if shared else [])
