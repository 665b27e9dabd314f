"""Approvals of code a repository brings: project hooks and project MCP servers run only after the
person approved that exact definition, and both are remembered here, in one store.

A definition is remembered by a digest: for a hook, ``fingerprint`` (the SHA-256 of its kind, the
resolved workspace and its canonical JSON); an MCP server hashes its own spec the same way. One
changed byte, another checkout or another kind needs a new approval. The file (``approvals.json``
in midstream's private state directory, which no sandboxed command can see) is a JSON object of
digest -> who and when, written under a lock with an atomic, fsynced replace, so two sessions
approving at once both count. A file that cannot be read approves nothing; it is never a reason to
run unapproved code, and the next approval rewrites it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from midstream.sandbox.private import private_dir, private_file

__all__ = ["ApprovalStore", "fingerprint"]


def fingerprint(kind: str, workspace: Path, definition: Any) -> str:
    """The digest a definition is approved by: kind, resolved workspace and the definition's canonical JSON."""
    canonical = json.dumps([kind, str(workspace.resolve()), definition], sort_keys=True, ensure_ascii=False,
                           separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ApprovalStore:
    """The person's approvals of project-defined hooks and MCP servers, by digest."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            from midstream.tools.conversation.transcript import state_dir

            path = state_dir() / "approvals.json"
        self.path = path

    def approved(self, digest: str) -> bool:
        """Has the person approved the definition with this digest?"""
        return digest in self._read()

    def approve(self, digest: str, name: str, workspace: Path) -> None:
        """Remember the person's yes to this digest (``name`` says what it was, for a person reading the file)."""
        private_dir(self.path.parent)
        with os.fdopen(private_file(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT), "r+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            records = self._read()
            records[digest] = {"name": name, "workspace": str(workspace), "approved": time.time()}
            temporary = self.path.with_suffix(f".{os.getpid()}.{id(records)}.tmp")
            with os.fdopen(private_file(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w") as out:
                json.dump(records, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # nothing approved (a damaged file approves nothing, and is rewritten on the next yes)
        return data if isinstance(data, dict) else {}
