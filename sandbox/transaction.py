"""One command as a transaction: run in an overlay, read its change set, then apply it or discard it.

    with Transaction.begin(workspace) as tx:
        run(tx.wrap(sandbox_argv))        # the command sees a copy-on-write workspace
        changes = tx.changes(git_view)    # what it did, as data (nothing applied yet)
        tx.apply(record, source)          # or leave without applying: discarded

Leaving the block removes the layer whatever happened, so a change set nobody applied is gone
(a countdown stopped by Esc, a signal, a broken reply or the session's end).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from midstream.sandbox.apply import Applied, apply_changes, start_stamp
from midstream.sandbox.changeset import ChangeSet, GitView, read_changes
from midstream.sandbox.overlay import Layer, Store, overlay_argv, overlay_works, store_for
from midstream.sandbox.record import UndoRecord
from midstream.tools.events import SandboxStatus

__all__ = ["Transaction", "protected_relative", "transaction_status", "transactions_unavailable"]


def transaction_status(status: SandboxStatus, workspace: Path, isolation: str) -> SandboxStatus:
    """The start-up line, saying whether commands run as transactions (and undo is exact) or not, and why."""
    if not status.confined:
        return replace(status, message=status.message + "; undo uses git snapshots (ignored files not covered)")
    why = transactions_unavailable(workspace.resolve(), isolation)
    if why:
        return replace(status, message=f"{status.message}; no copy-on-write view here ({why}): commands write the "
                                       "workspace directly and undo uses git snapshots")
    return replace(status, message=f"{status.message}, over a copy-on-write view of the workspace: each command's "
                                   "changes are seen before they are applied")


@functools.lru_cache(maxsize=8)
def transactions_unavailable(workspace: Path, isolation: str) -> str:
    """"" when shell commands can run as transactions in ``workspace``, else why not (for the start-up line)."""
    from midstream.sandbox.isolation import probe, sandboxed

    if isolation == "none":
        return "--isolation none"
    found = probe()
    if not found.available:
        return found.reason
    with sandboxed(["true"], workspace, isolation) as (argv, fds):
        return overlay_works(workspace, argv, fds)


def protected_relative(workspace: Path) -> frozenset[str]:
    """The protected paths, workspace-relative: entries there are the sandbox's mount points, never changes."""
    from midstream.sandbox.isolation import protected_paths

    root = workspace.resolve()
    found = set()
    for path, _why in protected_paths(root):
        if root in path.parents:
            found.add(str(path.relative_to(root)))
    return frozenset(found)


@dataclass
class Transaction:
    """A command's copy-on-write layer over one workspace."""

    workspace: Path
    store: Store
    layer: Layer
    since_ns: int
    change_set: ChangeSet | None = None
    applied: Applied | None = field(default=None)

    @classmethod
    @contextmanager
    def begin(cls, workspace: Path, store: Store | None = None, layer: Layer | None = None) -> Iterator[Transaction]:
        """A transaction over a fresh layer (or ``layer``: a spare sandbox's, made ahead of time)."""
        store = store or store_for(workspace.resolve())
        layer = layer or store.new_layer()
        try:
            yield cls(workspace.resolve(), store, layer, start_stamp(layer))
        finally:
            layer.remove()

    def wrap(self, sandbox: list[str]) -> list[str]:
        """The sandbox argv, run over this transaction's overlay."""
        return overlay_argv(sandbox, self.workspace, self.store, self.layer)

    def changes(self, git: GitView | None = None) -> ChangeSet:
        """What the command changed (read once)."""
        if self.change_set is None:
            self.change_set = read_changes(self.layer.upper, self.workspace, skip=protected_relative(self.workspace),
                                           git=git)
        return self.change_set

    def apply(self, record: UndoRecord, source: str = "") -> Applied:
        """Apply the change set, keeping what it replaces in ``record``."""
        self.applied = apply_changes(self.changes(), self.layer, self.workspace, record, self.since_ns, source)
        return self.applied
