"""The system prompt, built from the Markdown templates beside this file.

Templates are filled with ``string.Template.substitute``: a missing variable raises ``KeyError``,
so a template and its caller cannot drift apart silently. Everything here is computed once per
session and is stable for its length (no clock, no random ids, files in a fixed order), because
the system prompt sits in the cached prefix of every request; facts that change during a session,
such as the date, are told in a user message instead (see ``date_note``).
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from midstream.sandbox.git import run_git

__all__ = ["DATE_NOTE_PREFIX", "build_system_blocks", "date_note", "date_told_in", "instruction_files",
           "render_template"]

INSTRUCTION_NAMES = ("AGENTS.md", "CLAUDE.md")
MAX_INSTRUCTION_BYTES = 64 * 1024
STATUS_LINES = 20


def render_template(name: str, **values: str) -> str:
    """Fill ``prompts/<name>.md``; a missing variable is a KeyError, an unused one is ignored."""
    text = resources.files(__package__).joinpath(f"{name}.md").read_text(encoding="utf-8")
    return Template(text).substitute(values).strip()


def _git(workspace: Path, *args: str) -> str | None:
    try:
        done = run_git(args, workspace, timeout=5)  # hardened: the repository may be hostile
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode(errors="replace") if done.returncode == 0 else None


def _git_root(workspace: Path) -> Path | None:
    top = _git(workspace, "rev-parse", "--show-toplevel")
    return Path(top.strip()).resolve() if top else None


def _config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "midstream"


def instruction_files(workspace: Path) -> list[Path]:
    """The person's own AGENTS.md first, then the project's from the git root down to the workspace.

    In each directory AGENTS.md comes before CLAUDE.md; outside a git repository only the
    workspace itself is searched.
    """
    workspace = workspace.resolve()
    return _instruction_files(workspace, _git_root(workspace))


def _instruction_files(workspace: Path, git_root: Path | None) -> list[Path]:
    root = git_root or workspace
    directories = [workspace]
    while directories[-1] != root and root in directories[-1].parents:
        directories.append(directories[-1].parent)
    found = [p for p in [_config_dir() / "AGENTS.md"] if p.is_file()]
    for directory in reversed(directories):  # a repository's file may not lead outside it (AGENTS.md -> ~/.aws/…)
        found += [directory / name for name in INSTRUCTION_NAMES
                  if (directory / name).is_file() and (directory / name).resolve().is_relative_to(root)]
    return found


def _head(path: Path) -> bytes:
    """The first MAX_INSTRUCTION_BYTES of ``path``: memory bounded however large the file is."""
    with open(path, "rb") as file:
        return file.read(MAX_INSTRUCTION_BYTES)


def _workspace_facts(workspace: Path, root: Path | None) -> str:
    if root is None:
        git, status = "not a git repository", ""
    else:
        git = f"a git repository (root {root})"
        lines = (_git(workspace, "status", "--short", "--branch") or "").splitlines()
        shown = lines[:STATUS_LINES] + ([f"… {len(lines) - STATUS_LINES} more"] if len(lines) > STATUS_LINES else [])
        status = "- `git status` when the session started:\n\n```\n" + "\n".join(shown) + "\n```" if shown else ""
    return render_template("workspace", root=str(workspace), platform=platform.system(), git=git,
                           status=status)


def build_system_blocks(workspace: Path) -> list[dict[str, str]]:
    """The system prompt as text blocks: who the agent is, the workspace, then instruction files."""
    workspace = workspace.resolve()
    root = _git_root(workspace)  # one git process for both: it is on the way to the first request
    blocks = [render_template("system"), _workspace_facts(workspace, root)]
    for path in _instruction_files(workspace, root):
        content = _head(path).decode("utf-8", "replace").strip()
        if content:
            blocks.append(render_template("instructions", path=str(path), content=content))
    return [{"type": "text", "text": text} for text in blocks]


DATE_NOTE_PREFIX = "<context>Today's date is "


def date_note(today: datetime.date | None = None) -> str:
    today = today or datetime.date.today()
    return f"{DATE_NOTE_PREFIX}{today.isoformat()}.</context>"


def date_told_in(history: list[dict[str, Any]]) -> str | None:
    """The last date note a (resumed) conversation holds: it is told again only when the date changes."""
    for message in reversed(history):
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for block in blocks:
            if isinstance(block, dict) and block.get("type") == "text" and str(block.get("text", "")).startswith(
                    DATE_NOTE_PREFIX):
                return str(block["text"])
    return None
