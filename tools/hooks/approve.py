"""Which hooks may run this session: the person's own, and the project's that they approved.

A repository's ``.midstream/settings.toml`` is code execution the person never wrote, so each of
its hooks runs only once the person approved that exact definition (sandbox/approvals.py, the same
store as project MCP servers). At an interactive start the new or changed ones are listed and the
person is asked once; without a person (``-p``) they are skipped with one line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from midstream.sandbox.approvals import ApprovalStore, fingerprint
from midstream.tools.hooks.config import HookCommand

__all__ = ["KIND", "runnable_hooks"]

KIND = "hook"  # the approval store's kind for a project hook (MCP servers have their own)


def runnable_hooks(commands: list[HookCommand], workspace: Path, *, ask: Callable[[str], bool] | None,
                   say: Callable[[str], None], store: ApprovalStore | None = None) -> list[HookCommand]:
    """``commands`` less the project hooks the person has not approved (asking now, if ``ask`` can)."""
    project = [hook for hook in commands if hook.project]
    if not project:
        return commands
    store = store or ApprovalStore()
    pending = [hook for hook in project if not store.approved(fingerprint(KIND, workspace, hook.definition()))]
    if not pending:
        return commands
    plural = "s" if len(pending) != 1 else ""
    if ask is None:
        say(f"{len(pending)} project hook{plural} from {_files(pending)} not run: not approved yet (start "
            "midstream here without -p to review and approve them)")
        return [hook for hook in commands if hook not in pending]
    listing = "\n".join(f"  {hook.label()}" + (f"  matcher {hook.matcher!r}" if hook.matcher else "")
                        + f"  ({hook.where})" for hook in pending)
    if ask(f"This repository's settings define {len(pending)} hook{plural} that run shell commands "
           f"(inside the sandbox):\n{listing}\nRun {'them' if plural else 'it'} in this repository from now on?"):
        for hook in pending:
            store.approve(fingerprint(KIND, workspace, hook.definition()), hook.label(), workspace)
        return commands
    say(f"project hook{plural} not approved: {'they' if plural else 'it'} will not run in this session")
    return [hook for hook in commands if hook not in pending]


def _files(hooks: list[HookCommand]) -> str:
    return ", ".join(sorted({hook.where.split(":")[0].split(" (")[0] for hook in hooks}))
