"""The undo journal: what each file looked like before a request's tools first changed it.

A file tool calls ``record(path)`` just before it writes. The first record of a path keeps its
prior state (bytes and mode, or "did not exist"); later records of the same path in the same
request keep nothing new, so rolling back returns every file to where the request found it.
``rollback()`` restores in reverse order of first change. Shell commands are not journaled: what
they did cannot be undone, so the loop lists them to the person instead.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

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
            if path.is_file():
                prior = _Prior(path, path.read_bytes(), path.stat().st_mode & 0o7777)
            else:
                prior = _Prior(path, None, None)
            self._priors[path] = prior

    @property
    def paths(self) -> list[Path]:
        with self._lock:
            return list(self._priors)

    def rollback(self) -> list[Path]:
        """Restore every recorded file, newest first; return the paths restored."""
        with self._lock:
            priors = list(reversed(self._priors.values()))
            self._priors.clear()
        for prior in priors:
            if prior.content is None:
                with contextlib.suppress(FileNotFoundError):
                    prior.path.unlink()
                continue
            prior.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=f".{prior.path.name}.", suffix=".undo", dir=prior.path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(prior.content)
            if prior.mode is not None:
                os.chmod(temporary, prior.mode)
            os.replace(temporary, prior.path)
        return [p.path for p in priors]
