"""Which permission mode a session starts in when the person chose none, and why (it is said at the start).

- ``--replay``: read-only unless ``--mode`` is on the command line (a recording's commands re-run here).
- ``-p``: auto, but destructive commands are refused: nobody can stop a countdown.
- a person at a terminal: auto only where the sandbox works and the workspace is a git repository
  (commands are confined, and what they change can be seen and taken back); ask otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from midstream.agent import AgentConfig
from midstream.tools.cli.settings import Settings

__all__ = ["choose_mode", "sandbox_state"]


def choose_mode(config: AgentConfig, settings: Settings, args: argparse.Namespace, *, headless: bool) -> str:
    """Without a chosen mode: read-only for --replay; -p refuses destructive commands; a person at a
    terminal gets auto where the sandbox works in a git repository, else ask. Returns why, to say."""
    if args.replay is not None and settings.sources["mode"] != "--mode":  # a settings file's mode is for
        config.mode = "read-only"  # sessions, not for re-running a recording's commands here
        return "mode read-only: a replay re-runs recorded tool calls here, so nothing may write (--mode to change)"
    if settings.explicit("mode"):
        return f"mode {config.mode} (from {settings.sources['mode']})"
    if headless:
        config.mode, config.refuse_destructive = "auto", True
        return "mode auto, destructive commands refused: nobody can stop a countdown in -p (--mode auto allows)"
    sandboxed = sandbox_state(config) == "bwrap"
    in_git = _is_git_repository(config.workspace)
    if sandboxed and in_git:
        config.mode = "auto"
        return "mode auto: commands run sandboxed, and git holds what they change (/mode to change)"
    config.mode = "ask"
    why = "the sandbox does not work here" if not sandboxed else "this workspace is not a git repository"
    return f"mode ask: {why}, so each change waits for your yes (/mode auto to change)"


def sandbox_state(config: AgentConfig) -> str:
    if config.isolation == "none":
        return "off"
    from midstream.sandbox.isolation import bwrap_works

    return "bwrap" if bwrap_works() else "unavailable"


def _is_git_repository(workspace: Path) -> bool:
    from midstream.sandbox.git import run_git

    try:
        done = run_git(["rev-parse", "--is-inside-work-tree"], workspace, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == b"true"
