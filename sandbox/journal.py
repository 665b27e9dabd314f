"""The undo journal: what each file looked like before a request's tools first changed it.

A file tool calls ``record(path)`` just before it writes. The first record of a path keeps its
prior state (bytes and mode, or "did not exist"); later records of the same path in the same
request keep nothing new, so rolling back returns every file to where the request found it.
``rollback()`` restores in reverse order of first change. Shell commands are not journaled: what
they did cannot be undone, so the loop lists them to the person instead.

Recording and restoring go through ``sandbox.fdio``, like the file tools: the checked (resolved) path
is walked without following links, so a directory swapped for a symlink after the tool wrote makes the
restore fail for that path instead of writing or deleting outside the workspace.

Rollback never undoes a command: after a file tool writes, the loop ``seal``s the path (a hash of
what the tool left there). A path whose content is no longer what the tool wrote (a command
appended to it, say) is left as it is and listed in ``kept``; so is one that changed between two
tool writes. The command's result is reused by the retry, and its effect stays.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from midstream.sandbox import fdio

_log = logging.getLogger(__name__)

__all__ = ["UndoJournal"]


@dataclass(frozen=True)
class _Prior:
    path: Path
    content: bytes | None  # None: the file did not exist
    mode: int | None


class UndoJournal:
    """Per-request record of prior file states; thread-safe, since tools run on a pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._priors: dict[Path, _Prior] = {}  # insertion order is the order of first change
        self._sealed: dict[Path, str | None] = {}  # what the last tool write left at a path
        self._tainted: set[Path] = set()  # changed by something else after a tool wrote it
        self.kept: list[Path] = []  # paths the last rollback left alone, and why they were

    def record(self, path: Path) -> None:
        with self._lock:
            if path in self._priors:
                if path in self._sealed and _digest(path) != self._sealed[path]:
                    self._tainted.add(path)
                return
            found = fdio.read_bytes(path)  # raises for a non-file or a swapped path: the write does not happen
            self._priors[path] = _Prior(path, *found) if found else _Prior(path, None, None)

    def seal(self, path: Path) -> None:
        """A file tool finished writing ``path``: remember what it left there."""
        with self._lock:
            if path in self._priors:
                self._sealed[path] = _digest(path)

    def _changed_since_sealed(self, path: Path) -> bool:
        return path in self._tainted or (path in self._sealed and _digest(path) != self._sealed[path])

    @property
    def paths(self) -> list[Path]:
        with self._lock:
            return list(self._priors)

    def rollback(self) -> list[Path]:
        """Restore every recorded file, newest first; return the paths restored. Paths changed by
        something else since a tool wrote them are left alone and listed in ``kept``."""
        with self._lock:
            kept = [p for p in self._priors if self._changed_since_sealed(p)]
            priors = [p for p in reversed(self._priors.values()) if p.path not in kept]
            self._priors.clear()
            self._sealed.clear()
            self._tainted.clear()
            self.kept = kept
        restored = []
        for prior in priors:
            try:
                if prior.content is None:
                    fdio.remove(prior.path)
                else:
                    fdio.replace(prior.path, prior.content, prior.mode)
            except OSError as exc:  # the path changed under us: leave it, never act elsewhere
                _log.warning("undo: not restoring %s: %s", prior.path, exc)
                continue
            restored.append(prior.path)
        return restored


def _digest(path: Path) -> str | None:
    """A hash of the file's bytes, read through ``fdio`` (no link followed); None when there is no
    file. A path that cannot be read as a regular file (swapped for a link, say) gets a marker that
    differs from any hash, so a sealed path that became one is kept, never restored through."""
    try:
        with fdio.open_regular(path) as (fd, _info):
            digest = hashlib.sha256()
            while chunk := os.read(fd, 1 << 20):
                digest.update(chunk)
            return digest.hexdigest()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"unreadable: {exc.__class__.__name__}"
