"""What a destructive command would really touch, described for its countdown.

Paths come from ``policy.analyze`` already expanded as the shell would (``~``, ``$HOME``, exported
and earlier-assigned variables); here globs are expanded where the command will run (after the
``cd``s before it), directories are counted, and git forms list the files whose uncommitted changes
would be lost, asked of git itself through the hardened runner. Counting is bounded by a file and a
time budget shared by all targets, so the countdown starts at once whatever the target (``rm -rf /``
shows ``/ (10,000+ files)``). Devices are never listed.
"""

from __future__ import annotations

import glob
import itertools
import os
import subprocess
import time
from pathlib import Path

from midstream.sandbox.policy import UNKNOWN, Finding, GitWork, Verdict

__all__ = ["COUNT_LIMIT", "COUNT_SECONDS", "describe_targets"]

COUNT_LIMIT = 10_000  # files counted under all targets together, then "10,000+"
COUNT_SECONDS = 0.05  # and at most this long
GLOB_LIMIT = 1_000
GIT_LIST_LIMIT = 20  # file names shown for a git form; the rest as a number
GIT_SECONDS = 0.5  # a git form's countdown waits at most this long for git to list the files


class _Budget:
    def __init__(self) -> None:
        self.files = COUNT_LIMIT
        self.deadline = time.monotonic() + COUNT_SECONDS

    def spent(self) -> bool:
        return self.files <= 0 or time.monotonic() > self.deadline


def describe_targets(findings: list[Finding], workspace: Path) -> list[str]:
    """One line per target of every destructive finding, in order, without repeats."""
    budget = _Budget()
    described: list[str] = []
    for finding in findings:
        if finding.verdict is not Verdict.DESTRUCTIVE:
            continue
        for target in finding.targets:
            if isinstance(target, GitWork):
                described += _git_work(target, workspace)
            else:
                described += _paths(target, finding.cwd, workspace, budget)
    return list(dict.fromkeys(described))


def _paths(pattern: str, cwd: Path | None, workspace: Path, budget: _Budget) -> list[str]:
    if pattern.endswith("(what find matches)"):
        return [pattern]
    if pattern == UNKNOWN or UNKNOWN in pattern:
        return ["(a name only known when the command runs)"]
    if pattern.startswith("/dev/"):
        return []
    if not os.path.isabs(pattern) and cwd is None:
        return [f"{pattern} (after a cd that cannot be followed; not resolved)"]
    full = pattern if os.path.isabs(pattern) else os.path.join(cwd or workspace, pattern)
    if glob.has_magic(full):
        matches = sorted(itertools.islice(glob.iglob(full), GLOB_LIMIT))
        if not matches:
            return [f"{_shown(full, workspace)} (matches nothing)"]
    else:
        matches = [full]
    return [_describe(path, workspace, budget) for path in matches]


def _shown(path: str, workspace: Path) -> str:
    normal = os.path.normpath(path)
    root = str(workspace)
    if normal.startswith(root + os.sep):
        return os.path.relpath(normal, root)
    return normal


def _describe(path: str, workspace: Path, budget: _Budget) -> str:
    shown = _shown(path, workspace)
    if os.path.isdir(path) and not os.path.islink(path):
        count, complete = _count(path, budget)
        suffix = "files" if count != 1 else "file"
        return f"{shown.rstrip('/')}/ ({count:,}{'' if complete else '+'} {suffix})"
    if os.path.lexists(path):
        return shown
    return f"{shown} (does not exist)"


def _count(top: str, budget: _Budget) -> tuple[int, bool]:
    """Files below ``top``, stopping when the shared budget is spent."""
    count = 0
    stack = [top]
    while stack:
        if budget.spent():
            return count, False
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                            continue
                    except OSError:
                        pass
                    count += 1
                    budget.files -= 1
        except OSError:
            continue
    return count, True


def _git_work(work: GitWork, workspace: Path) -> list[str]:
    if work.kind == "note":
        return [work.note]
    from midstream.sandbox.git import run_git

    cwd = work.cwd or workspace
    pathspecs = ["--", *work.pathspecs] if work.pathspecs else []
    if work.kind == "untracked":
        args = ["ls-files", "-z", "--others", *([] if work.note == "x" else ["--exclude-standard"]), *pathspecs]
        what = "untracked"
    else:
        args = ["status", "--porcelain=v1", "-z", "--untracked-files=no", "--no-renames", *pathspecs]
        what = "uncommitted changes"
    try:
        result = run_git(["--literal-pathspecs", *args], cwd, timeout=GIT_SECONDS)
    except (OSError, subprocess.SubprocessError):  # slow, hung or missing: still say what is at stake
        return [f"{what} in {_shown(str(cwd), workspace)} (git did not list them in time)"]
    if result.returncode != 0:
        return [f"{what} in {cwd.name} (not a git repository?)"]
    names = [n for n in result.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    if work.kind != "untracked":
        names = [n[3:] for n in names if len(n) > 3]
    if not names:
        return [f"no {what} in {_shown(str(cwd), workspace)}"]
    shown = [f"{name} ({what})" for name in names[:GIT_LIST_LIMIT]]
    if len(names) > GIT_LIST_LIMIT:
        shown.append(f"… and {len(names) - GIT_LIST_LIMIT:,} more files with {what}")
    return shown
