"""Project servers the person approved, remembered by a hash of the exact definition and workspace.

A repository's ``.mcp.json`` runs code on the person's machine, so nothing in it starts until they
said yes to that definition; change one character (or its expanded environment) and it asks again.
The record lives in midstream's private state directory, never in the repository.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from midstream.sandbox.private import private_dir, private_file

__all__ = ["Approvals"]


class Approvals:
    """A JSON file of approved digests; several midstreams may approve at once (a lock, an atomic replace)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def approved(self, digest: str) -> bool:
        return digest in self._read()

    def approve(self, digest: str, name: str, workspace: Path) -> None:
        private_dir(self.path.parent)
        with os.fdopen(private_file(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT), "r+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            records = self._read()
            records[digest] = {"name": name, "workspace": str(workspace), "approved": time.time()}
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            with os.fdopen(private_file(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w") as out:
                json.dump(records, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # nothing approved (a damaged file approves nothing, and is rewritten on the next yes)
        return data if isinstance(data, dict) else {}
