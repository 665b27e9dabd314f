"""One command as a transaction: run in an overlay, read its change set, then apply it or discard it.

    with Transaction.begin(workspace) as tx:
        run(tx.wrap(sandbox_argv))        # the command sees a copy-on-write workspace
        changes = tx.changes(git_view)    # what it did, as data (nothing applied yet)
        tx.apply(record, source)          # or leave without applying: discarded

Leaving the block removes the layer whatever happened, so a change set nobody applied is gone
(a countdown stopped by Esc, a signal, a broken reply or the session's end).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from midstream.sandbox.apply import Applied, apply_changes, start_stamp
from midstream.sandbox.changeset import ChangeSet, GitView, read_changes
from midstream.sandbox.overlay import Layer, Store, overlay_argv, store_for
from midstream.sandbox.record import UndoRecord

__all__ = ["Transaction", "protected_relative"]


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
    def begin(cls, workspace: Path, store: Store | None = None) -> Iterator[Transaction]:
        store = store or store_for(workspace.resolve())
        layer = store.new_layer()
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
