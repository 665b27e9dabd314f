"""What happens to a command's change set: the permission mode acting on what the command did.

The command already ran, in an overlay (sandbox/transaction.py); nothing of it is in the workspace.

- **read-only**: nothing is applied, ever. The model is told what was discarded.
- **auto**: a change set that deletes or overwrites what git cannot give back counts down first,
  listing exactly what would go; Esc, Ctrl-C, SIGTERM, SIGHUP, a reply that breaks off, a rollback
  or the session's end discard it (``Stops``), and the model is told who did. Everything else applies.
- **-p** (auto, nobody watching): such a change set is not applied, and the model is told why.
- **ask**: an empty change set needs no question (the command was harmless, whatever its text);
  any other is shown (its changes, the deletions and a diff) and the person applies or discards it.

Effects outside the workspace, which no overlay holds back, are judged before the command runs
(``outside_effects``): only with the network on can a sandboxed command reach anything outside at all
(its own pid namespace, a private /tmp, read-only system, read-only ``.git``), so only then do forms
like ``git push --force``, ``curl -X DELETE`` or ``kubectl delete`` count down or get asked first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from midstream.sandbox.changeset import ChangeSet
from midstream.tools.events import ToolAsking, ToolGrace

__all__ = ["Stops", "Verdict", "outside_effects", "review"]


@dataclass(frozen=True)
class Verdict:
    """Apply the change set or not, and the line the model reads about it."""

    apply: bool
    note: str = ""


@dataclass
class Stops:
    """What ends a countdown or a pending question early, each with the words for who ended it."""

    cancelled: threading.Event  # Esc, Ctrl-C, or the agent stopping its tools (SIGTERM, SIGHUP, exit)
    discard: threading.Event | None = None  # the reply broke off or was rolled back

    def wait(self, seconds: float) -> str | None:
        """Wait up to ``seconds``; who stopped it, or None when the time ran out."""
        deadline = time.monotonic() + seconds
        while True:
            if who := self.who():
                return who
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.cancelled.wait(min(left, 0.02))

    def who(self) -> str | None:
        if self.cancelled.is_set():
            return "the person (Esc or Ctrl-C) or the session ending (SIGTERM, SIGHUP, exit)"
        if self.discard is not None and self.discard.is_set():
            return "the reply breaking off (it was rolled back; a retry may ask again)"
        return None


def review(changes: ChangeSet, *, mode: str, command: str, call_id: str, stops: Stops,
           announce: Callable[[ToolGrace | ToolAsking], None], confirm: Callable[[str, threading.Event], str] | None,
           refuse_destructive: bool = False, grace_seconds: float = 3.0) -> Verdict:
    """Decide about an observed change set (see the module docstring)."""
    if changes.empty:
        return Verdict(False)
    summary = changes.summary()
    if mode == "read-only":
        return Verdict(False, f"[ran in isolation; read-only mode, so its changes to the workspace ({summary}) "
                              "were discarded: nothing reached the workspace]")
    if who := stops.who():
        return Verdict(False, f"[ran in isolation; stopped by {who}, so its changes ({summary}) were discarded: "
                              "nothing reached the workspace]")
    losses = changes.loss_lines()
    if mode == "ask":
        if confirm is None:
            return Verdict(False, f"[ran in isolation; its changes ({summary}) need the person's approval (ask mode) "
                                  "and nobody can answer in this non-interactive run, so they were discarded]")
        announce(ToolAsking(call_id, "bash", {"command": command}, "", f"Running `{_short(command)}`",
                            changes=tuple(_shown(changes))))
        answer = "no" if stops.who() else confirm(f"Apply what `{_short(command)}` changed ({summary})?",
                                                  stops.cancelled)
        if answer in ("yes", "always") and not stops.who():
            return Verdict(True)
        by = stops.who() or "the person"
        return Verdict(False, f"[ran in isolation; {by} discarded its changes ({summary}): nothing reached the "
                              "workspace. Do not retry it; ask them what they want instead]")
    if not losses:
        return Verdict(True)
    listed = "; ".join(losses[:20]) + (f"; and {len(losses) - 20} more" if len(losses) > 20 else "")
    if refuse_destructive:
        return Verdict(False, f"[ran in isolation and NOT applied: it {listed}, which git cannot give back, and in "
                              "this non-interactive run nobody can stop a countdown. Nothing reached the workspace. "
                              "Do the rest without it and say in your answer that it needs the person, or a run "
                              "with --mode auto]")
    if grace_seconds > 0:
        announce(ToolGrace(call_id, command, tuple(losses), grace_seconds))
        if who := stops.wait(grace_seconds):
            return Verdict(False, f"[ran in isolation; stopped by {who} during its {grace_seconds:g} s countdown, so "
                                  f"its changes were discarded ({listed}): nothing reached the workspace. Do not "
                                  "retry it; ask what to do instead]")
    return Verdict(True)


def _short(command: str, width: int = 60) -> str:
    line = " ".join(command.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _shown(changes: ChangeSet, diff_lines: int = 60) -> list[str]:
    """The change lines, then the diffs of modified text files, for the question."""
    rows = changes.lines()
    for change in changes.changes:
        if change.diff and diff_lines > 0:
            lines = change.diff.splitlines()[:diff_lines]
            rows += lines
            diff_lines -= len(lines)
    return rows


# Programs and forms that act on something beyond the machine: only reachable with the network on.
_REMOTE_PROGRAMS = frozenset({"kubectl", "helm", "terraform", "tofu", "pulumi", "docker", "podman", "aws", "gcloud",
                              "az", "ssh", "scp", "sftp", "rsync", "heroku", "flyctl", "vercel", "netlify", "npm",
                              "twine", "gh"})
_REMOTE_SUBCOMMANDS = {
    "npm": {"publish", "unpublish", "deprecate"},
    "gh": {"repo", "release", "api", "pr", "issue", "secret", "workflow"},
    "docker": {"push", "rm", "rmi", "system", "volume", "container", "image", "stop", "kill"},
    "podman": {"push", "rm", "rmi", "system", "volume", "container", "image", "stop", "kill"},
    "twine": {"upload"},
    "kubectl": {"delete", "apply", "replace", "patch", "scale", "drain", "cordon", "exec", "rollout", "edit"},
    "helm": {"install", "upgrade", "uninstall", "delete", "rollback"},
    "terraform": {"apply", "destroy", "import", "state"},
    "tofu": {"apply", "destroy", "import", "state"},
}
_MUTATING_METHODS = frozenset({"DELETE", "PUT", "PATCH", "POST"})


def outside_effects(command: str) -> tuple[str, ...]:
    """What this command could do beyond the workspace over the network, as reasons; () when nothing readable."""
    from midstream.sandbox.commandline import UNKNOWN, normalise, unwrap
    from midstream.sandbox.shellparse import parse_script

    parsed = parse_script(command)
    reasons: list[str] = []
    for simple in parsed.commands:
        words = [UNKNOWN if w is None else w for w in simple.argv]
        if not words:
            continue
        _, argv = unwrap(words)
        if not argv:
            continue
        program, args = normalise(argv[0]), argv[1:]
        operands = [a for a in args if not a.startswith("-")]
        if program == "git" and operands[:1] == ["push"] and any(
                a in ("-f", "--force", "--mirror", "--delete", "-d") or a.startswith(("--force", "+"))
                or a.startswith(":") for a in args):
            reasons.append("git push --force/--delete rewrites a remote")
        elif program in ("curl", "wget", "http", "xh"):
            methods = {args[i + 1].upper() for i, a in enumerate(args[:-1]) if a in ("-X", "--request", "--method")}
            methods |= {a.split("=", 1)[1].upper() for a in args if a.startswith(("--request=", "--method="))}
            methods |= {a.upper() for a in operands if a.upper() in _MUTATING_METHODS and program in ("http", "xh")}
            if methods & _MUTATING_METHODS:
                reasons.append(f"{program} {'/'.join(sorted(methods & _MUTATING_METHODS))} changes a remote resource")
        elif program in _REMOTE_PROGRAMS:
            wanted = _REMOTE_SUBCOMMANDS.get(program)
            if wanted is None or set(operands[:2]) & wanted:
                reasons.append(f"{program} {' '.join(operands[:2])} acts on a remote system".replace("  ", " "))
    return tuple(dict.fromkeys(reasons))
