"""Files only the person can read: session transcripts, logs, recordings, prompt history.

They hold the conversation, the code it showed and anything secret typed into it, so each directory
midstream makes for them is 0700 and each file 0600, from the moment it exists (created with that
mode, not chmod-ed after a window in which it was readable), whatever the umask.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["private_dir", "private_file", "write_private"]


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700 directories; tighten it if it already exists."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
    os.chmod(path, 0o700)
    return path


def private_file(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND) -> int:
    """Open (creating as 0600) a file in a private directory; an existing file is tightened to 0600."""
    private_dir(path.parent)
    fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def write_private(path: Path, text: str) -> None:
    """Replace ``path``'s content with ``text``, the file private to the user."""
    with os.fdopen(private_file(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w", encoding="utf-8") as f:
        f.write(text)
