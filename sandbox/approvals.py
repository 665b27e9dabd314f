"""Approvals of code a repository brings: project hooks and project MCP servers run only after the
person approved that exact definition.

A definition's fingerprint is the SHA-256 of its kind, the workspace it belongs to and its canonical
JSON: one changed byte, another checkout or another kind needs a new approval. Approved fingerprints
live in ``approvals.json`` in midstream's state directory (which no command can write: the sandbox
never shows it), written atomically under a lock, so two sessions approving at once both count. A
file that cannot be read or parsed approves nothing; it is never a reason to run unapproved code.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["ApprovalStore", "fingerprint"]

log = logging.getLogger("midstream.approvals")


def fingerprint(kind: str, workspace: Path, definition: Any) -> str:
    """The hash an approval is remembered by: kind, resolved workspace and the definition's canonical JSON."""
    canonical = json.dumps([kind, str(workspace.resolve()), definition], sort_keys=True, ensure_ascii=False,
                           separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ApprovalStore:
    """The person's approvals of project-defined hooks and MCP servers, by fingerprint."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            from midstream.tools.conversation.transcript import state_dir

            path = state_dir() / "approvals.json"
        self.path = path

    def approved(self, kind: str, workspace: Path, definition: Any) -> bool:
        """Has the person approved exactly this definition for this workspace?"""
        return self.has(fingerprint(kind, workspace, definition))

    def approve(self, kind: str, workspace: Path, definition: Any, *, label: str = "") -> None:
        """Remember the person's approval of this exact definition."""
        self.remember(fingerprint(kind, workspace, definition), kind, workspace, label)

    def has(self, key: str) -> bool:
        """Is this digest approved (for a caller that hashes its definitions itself, as MCP's specs do)?"""
        return key in self._load().get("approved", {})

    def remember(self, key: str, kind: str, workspace: Path, label: str = "") -> None:
        """Approve a digest the caller computed."""
        with self._locked():
            record = self._load()
            record.setdefault("approved", {})[key] = {
                "kind": kind, "workspace": str(workspace.resolve()), "label": label, "at": time.time()}
            self._save(record)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": 1, "approved": {}}
        except (OSError, ValueError) as error:
            log.warning("approvals file %s unreadable, nothing counts as approved: %s", self.path, error)
            return {"version": 1, "approved": {}}
        if not isinstance(data, dict) or not isinstance(data.get("approved"), dict):
            return {"version": 1, "approved": {}}
        return data

    def _save(self, record: dict[str, Any]) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        temporary.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
