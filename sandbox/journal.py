"""The undo journal: what each file looked like before a request's tools first changed it.

A file tool calls ``record(path)`` just before it writes. The first record of a path keeps its
prior state (bytes and mode, or "did not exist"); later records of the same path in the same
request keep nothing new, so rolling back returns every file to where the request found it.
``rollback()`` restores in reverse order of first change. Shell commands are not journaled: what
they did cannot be undone, so the loop lists them to the person instead.

Recording and restoring go through ``sandbox.fdio``, like the file tools: the checked (resolved) path
is walked without following links, so a directory swapped for a symlink after the tool wrote makes the
restore fail for that path instead of writing or deleting outside the workspace.
"""

from __future__ import annotations

import logging
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

    def record(self, path: Path) -> None:
        with self._lock:
            if path in self._priors:
                return
            found = fdio.read_bytes(path)  # raises for a non-file or a swapped path: the write does not happen
            self._priors[path] = _Prior(path, *found) if found else _Prior(path, None, None)

    @property
    def paths(self) -> list[Path]:
        with self._lock:
            return list(self._priors)

    def rollback(self) -> list[Path]:
        """Restore every recorded file, newest first; return the paths restored."""
        with self._lock:
            priors = list(reversed(self._priors.values()))
            self._priors.clear()
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
