"""What a message carries besides what was typed: folded pastes and ``@path`` mentions.

A paste of more than ``FOLD_LINES`` lines is held here and shown in the line being edited as one
token, ``[pasted 43 lines]``, so the prompt stays one row and the scrollback shows what was sent
without 43 rows of traceback; ``expand`` puts the text back in when the message is sent (or when
the person asks to see it). ``@src/app.py`` in a message attaches that file's content (a folder:
its listing) after the message, read with the same confinement the file tools use: nothing
outside the workspace, no symlink followed out of it, only regular files.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from midstream.sandbox import fdio
from midstream.sandbox.paths import confine

__all__ = ["FOLD_LINES", "Pastes", "attach_mentions", "mentions"]

FOLD_LINES = 3  # a paste of more lines than this is folded
ATTACH_MAX_BYTES = 256 * 1024  # as read_file: the model gets the head of a larger file, and is told
LIST_MAX_ENTRIES = 500
_MENTION = re.compile(r"(?:(?<=\s)|^)@((?:[^\s\\]|\\ )+)")


@dataclass
class Pastes:
    """Pasted blocks by their token, for this session."""

    held: dict[str, str] = field(default_factory=dict)

    def fold(self, text: str) -> str:
        """The text to insert for a paste: itself when short, else a token that stands for it."""
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.count("\n") + (not text.endswith("\n"))
        if lines <= FOLD_LINES:
            return text
        token = f"[pasted {lines} lines]"
        number = 1
        while token in self.held and self.held[token] != text:
            number += 1
            token = f"[pasted {lines} lines #{number}]"
        self.held[token] = text
        return token

    def expand(self, text: str) -> str:
        """``text`` with every token it holds replaced by the paste it stands for."""
        for token, pasted in self.held.items():
            if token in text:
                text = text.replace(token, pasted.rstrip("\n"))
        return text

    def folded(self, text: str) -> bool:
        return any(token in text for token in self.held)


def mentions(text: str) -> list[str]:
    """The ``@path`` words of a message, in order, each once (``\\ `` escapes a space)."""
    seen: list[str] = []
    for match in _MENTION.finditer(text):
        path = match.group(1).replace("\\ ", " ").rstrip(".,;:!?)\"'")
        if path and path not in seen:
            seen.append(path)
    return seen


def attach_mentions(text: str, workspace: Path) -> tuple[str, list[str]]:
    """The message with each mentioned file or folder attached after it, and one note per mention
    for the person (what was attached, or why not). Words that name nothing stay as typed."""
    blocks: list[str] = []
    notes: list[str] = []
    for path in mentions(text):
        try:
            target = confine(workspace, path)
        except PermissionError:
            notes.append(f"@{path}: outside the workspace, not attached")
            continue
        if not os.path.lexists(target):
            continue  # an @name that is no path (a handle, a decorator): part of the message
        try:
            body, what = _listing(target) if target.is_dir() else _content(target)
        except OSError as error:
            notes.append(f"@{path}: not attached ({error.strerror or error})")
            continue
        blocks.append(f'<attachment path="{path}">\n{body}\n</attachment>')
        notes.append(f"@{path}: attached {what}")
    if not blocks:
        return text, notes
    return text + "\n\n" + "\n\n".join(blocks), notes


def _content(path: Path) -> tuple[str, str]:
    with fdio.open_regular(path) as (fd, info):
        data, size = os.pread(fd, ATTACH_MAX_BYTES, 0), info.st_size
    if b"\0" in data[:8192]:
        return f"(a binary file of {size:,} bytes; its content is not shown)", "a binary file's size"
    text = data.decode("utf-8", errors="replace")
    lines = text.count("\n") + (bool(text) and not text.endswith("\n"))
    if size > len(data):
        text += f"\n[… cut: the file has {size:,} bytes, the first {len(data):,} are shown; read_file reads on]"
    return text.rstrip("\n"), f"{lines} line{'s' * (lines != 1)}"


def _listing(path: Path) -> tuple[str, str]:
    entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    names = [entry.name + ("/" if entry.is_dir(follow_symlinks=False) else "") for entry in entries
             if entry.name != ".git"]
    shown = names[:LIST_MAX_ENTRIES]
    if len(names) > len(shown):
        shown.append(f"[… {len(names) - len(shown)} more entries]")
    return "\n".join(shown) or "(empty folder)", f"a listing of {len(names)} entr{'ies' if len(names) != 1 else 'y'}"
