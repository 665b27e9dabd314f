"""midstream's own git calls, hardened against a hostile repository.

A repository's ``.git/config`` is data an attacker may have written (a cloned repository, or a
command the model ran). Git executes programs named there: ``core.fsmonitor`` on every ``status``,
hooks on commits, ``core.pager``, ``diff.external`` and textconv drivers on diffs, ``core.sshCommand``
on fetches. Every git process midstream starts itself goes through :func:`run_git`, which turns all of
them off on the command line (``-c`` beats every config file, and reaches child git processes through
GIT_CONFIG_PARAMETERS) and ignores the system config, so no program named by the repository runs with
midstream's environment. Drivers have names the repository chooses (``filter.evil.process`` runs on a
plain ``git status`` of a modified file), so run_git first reads which driver programs the config
names (reading config runs nothing) and blanks each one.

git itself is the one found at start outside the workspace (sandbox/programs.py: a ``.venv/bin/git``
planted by a command is never run), and its environment has no model key or other credential.
Submodules and embedded repositories are never entered: each runs git under its own config.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from midstream.sandbox import programs
from midstream.sandbox.secrets import without_secrets

__all__ = ["HARDENING", "git_env", "run_git"]

# Each setting names a program or behaviour git would otherwise take from the repository's config.
HARDENING: tuple[str, ...] = (
    "-c", "core.fsmonitor=false",  # a program run on every status/diff
    "-c", "core.hooksPath=/dev/null",  # hooks: pre-commit, post-checkout, reference-transaction ...
    "-c", "core.pager=cat",  # a pager is a program
    "-c", "core.editor=true",  # so is an editor
    "-c", "core.sshCommand=false",  # and an ssh wrapper
    "-c", "core.askPass=",
    "-c", "credential.helper=",
    "-c", "diff.external=",  # external diff drivers
    "-c", "core.untrackedCache=false",  # never rewrite the index's cache as a side effect of reading
    "-c", "protocol.ext.allow=never",  # ext:: URLs run commands
    "-c", "filter.lfs.process=",  # clean/smudge filters are programs; the common one named here
    "-c", "core.alternateRefsCommand=",
    "-c", "core.gitProxy=",
    "-c", "sequence.editor=true",
    "-c", "commit.gpgSign=false", "-c", "tag.gpgSign=false", "-c", "gpg.program=false",
    "-c", "diff.ignoreSubmodules=all",  # status would run git inside each submodule, under its own config
    "-c", "status.submoduleSummary=false", "-c", "submodule.recurse=false", "-c", "fetch.recurseSubmodules=false",
    "-c", "safe.bareRepository=explicit",  # a bare repository planted in the workspace is never discovered
    "--no-pager",
)

# Config keys naming a program for a driver the repository names itself (filter.<name>.clean ...).
_DRIVER_KEYS = r"^(filter|diff|merge)\..+\.(clean|smudge|process|textconv|command|driver)$"


def git_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a git call: no system config, no prompts, no optional index writes."""
    env = without_secrets(os.environ if base is None else base)
    for name in list(env):
        if name.startswith("GIT_") and name not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE",
                                                     "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES"):
            del env[name]  # GIT_EXTERNAL_DIFF, GIT_PAGER, GIT_SSH_COMMAND, GIT_CONFIG_* ...
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", GIT_PAGER="cat",
               GIT_ATTR_NOSYSTEM="1")
    return env


# Subcommands that would look inside submodules; a .gitmodules ``ignore = none`` beats diff.ignoreSubmodules,
# only the command line beats that.
_LOOKS_INSIDE = frozenset({"status", "diff", "diff-files", "diff-index", "log", "show"})


def _no_submodules(args: Sequence[str]) -> list[str]:
    """``args`` with ``--ignore-submodules=all`` after a subcommand that would otherwise enter submodules."""
    args = list(args)
    index = 0
    while index < len(args) and args[index].startswith("-"):
        index += 2 if args[index] in ("-c", "-C") else 1
    if index < len(args) and args[index] in _LOOKS_INSIDE:
        args.insert(index + 1, "--ignore-submodules=all")
    return args


def run_git(
    args: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS`` in ``cwd`` with every repository-configured program disabled.

    Diff-like commands also need ``--no-ext-diff --no-textconv`` among their own arguments; callers
    that diff pass them. Raises ``OSError`` when git is missing and ``TimeoutExpired`` on a hang.
    """
    environment = git_env(env)
    git = programs.resolve("git")
    if git is None:
        raise FileNotFoundError("git is not installed (or only inside the workspace, where midstream never runs it)")
    listed = subprocess.run(
        [git, *HARDENING, "config", "--null", "--name-only", "--get-regexp", _DRIVER_KEYS], cwd=cwd,
        env=environment, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )
    blanked = [f"{key}=" for key in listed.stdout.decode("utf-8", "replace").split("\0") if key]
    overrides = [part for setting in blanked for part in ("-c", setting)]
    return subprocess.run(
        [git, *HARDENING, *overrides, *_no_submodules(args)], cwd=cwd, env=environment, input=input,
        capture_output=True, timeout=timeout, check=False, stdin=None if input is not None else subprocess.DEVNULL,
    )
