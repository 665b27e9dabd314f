"""Finding things: list_dir, glob and grep, all with the workspace's ignore rules applied.

glob and grep run ripgrep (a dependency: the ``ripgrep`` wheel puts ``rg`` beside the Python that
runs midstream) and fall back to Python only when it cannot run. Both see the same files: rg is
told to use only ``.gitignore`` files inside the workspace (not global or parent ignores, not
``.ignore``), to include hidden files, and to skip our default directories, which is exactly what
``sandbox.ignore`` does; both skip binary files and never follow a symlink. Output is sorted by path
and line either way. Neither can hang on a pattern: rg's engine is linear-time, and the Python
fallback uses RE2 (google-re2), which is too; a pattern only a backtracking engine could run is refused.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from midstream.sandbox.ignore import DEFAULT_IGNORED_DIRS, IgnoreRules
from midstream.sandbox.paths import confine, display_path
from midstream.tools.files import is_binary
from midstream.tools.registry import (
    Access,
    Facts,
    Output,
    ToolContext,
    ToolError,
    Wording,
    counted,
    tool,
    workspace_key,
)

__all__ = ["glob", "grep", "list_dir"]

MAX_ENTRIES = 500
MAX_MATCHES = 200
MAX_MATCH_CHARS = 300


def _reads_dir(workspace: Path, args: dict[str, Any]) -> Access:
    return Access.reading(workspace_key(workspace, str(args.get("path") or ".")))


def _capped(lines: list[str], total: int, noun: str, extra: str = "") -> str:
    body = "\n".join(lines)
    if total > len(lines):
        body += f"\n[{total - len(lines):,} more {noun} not shown; narrow the search to see them]"
    return body + extra


@tool(
    wording=Wording("Listing", "Listed", default="."),
    access=_reads_dir,
    params={"path": "Directory relative to the workspace root (default: the root)."},
)
def list_dir(ctx: ToolContext, path: str = ".") -> Output:
    """List a directory's entries (directories end in /), sorted, ignored entries left out."""
    directory = confine(ctx.workspace, path)
    shown = display_path(ctx.workspace, directory)
    if not directory.is_dir():
        raise ToolError(f"{shown} is not a directory.")
    rules = IgnoreRules(ctx.workspace)
    entries = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        is_dir = entry.is_dir(follow_symlinks=False)
        relative = Path(entry.path).relative_to(rules.root).as_posix()
        if not rules.is_ignored(relative, is_dir):
            entries.append(entry.name + ("/" if is_dir else "" if not entry.is_symlink() else "@"))
    ignored = rules.count_ignored(directory)
    note = f"\n[{ignored} ignored entries not shown]" if ignored else ""
    if not entries:
        return Output(f"{shown} has no entries that are not ignored.{note}", Facts(count=0, detail="empty"))
    return Output(_capped(entries[:MAX_ENTRIES], len(entries), "entries", note),
                  Facts(count=len(entries), detail=counted(len(entries), "entry", "entries")))


@tool(
    wording=Wording("Finding", "Found", target="pattern"),
    access=_reads_dir,
    params={
        "pattern": "Glob relative to path, e.g. '**/*.py' (any depth) or 'src/*.ts' (one level).",
        "path": "Directory to search from, relative to the workspace root (default: the root).",
    },
)
def glob(ctx: ToolContext, pattern: str, path: str = ".") -> Output:
    """Find files whose path matches a glob pattern, sorted, ignored files left out."""
    base = confine(ctx.workspace, path)
    if not base.is_dir():
        raise ToolError(f"{display_path(ctx.workspace, base)} is not a directory.")
    import pathspec

    # gitignore-style matching anchored with a leading "/" has glob's semantics: "*.py" is one level, "**/" any depth.
    spec = pathspec.PathSpec.from_lines("gitignore", ["/" + pattern.lstrip("/")])
    root = ctx.workspace.resolve()
    prefix = base.relative_to(root).as_posix()
    listed = _rg_files(root, base)
    if listed is None:
        listed = [relative for relative, is_dir in IgnoreRules(ctx.workspace).walk(base) if not is_dir]
    found = []
    for relative in listed:
        below = relative[len(prefix) + 1 :] if prefix != "." else relative
        if spec.match_file(below):
            found.append(relative)
    if not found:
        return Output(f"No files match {pattern!r} under {display_path(ctx.workspace, base)}.",
                      Facts(count=0, detail="no files"))
    return Output(_capped(found[:MAX_ENTRIES], len(found), "files"),
                  Facts(count=len(found), detail=counted(len(found), "file")))


@tool(
    wording=Wording("Searching", "Searched", target="pattern",
                    words=lambda args: f"for `{args.get('pattern', '…')}` in {args.get('path') or '.'}"),
    access=_reads_dir,
    params={
        "pattern": "Regular expression to search for (the common subset of Python and Rust syntax).",
        "path": "File or directory to search, relative to the workspace root (default: the root).",
        "glob": "Only search files whose name matches this glob, e.g. '*.py'.",
        "ignore_case": "Match case-insensitively.",
    },
)
def grep(ctx: ToolContext, pattern: str, path: str = ".", glob: str = "", ignore_case: bool = False) -> Output:
    """Search file contents with a regular expression; returns path:line:text, sorted."""
    target = confine(ctx.workspace, path)
    if not target.exists():
        raise ToolError(f"{display_path(ctx.workspace, target)} does not exist.")
    rg = ripgrep() if "/" not in glob else None  # rg file types match names, not paths
    matches = _rg(ctx.workspace, rg, pattern, target, glob, ignore_case) if rg else None
    if matches is None:
        matches = _python_grep(ctx.workspace, _linear(pattern, ignore_case), target, glob)
    if not matches:
        return Output(f"No matches for {pattern!r}.", Facts(count=0, detail="no matches"))
    files = len({m.split(":", 1)[0] for m in matches})
    shown = [m if len(m) <= MAX_MATCH_CHARS else m[:MAX_MATCH_CHARS] + "…" for m in matches[:MAX_MATCHES]]
    head = f"{len(matches):,} matches in {files:,} files\n"
    return Output(head + _capped(shown, len(matches), "matches"),
                  Facts(count=len(matches), detail=f"{counted(len(matches), 'match', 'matches')} in "
                                                   f"{counted(files, 'file')}"))


@functools.cache
def ripgrep() -> str | None:
    """The rg installed with midstream (beside its Python), else one on PATH."""
    from midstream.sandbox import programs

    beside = Path(sys.executable).parent / "rg"
    writable = any(beside.resolve().is_relative_to(d) for d in programs.untrusted_dirs())
    if beside.is_file() and os.access(beside, os.X_OK) and not writable:
        return str(beside)
    return programs.resolve("rg")  # never one a command could have planted in the workspace


def _linear(pattern: str, ignore_case: bool) -> Any:
    """The pattern compiled for RE2, whose matching time is linear in the text: no pattern can hang it."""
    import re2

    try:
        return re2.compile(f"(?i){pattern}" if ignore_case else pattern)
    except re2.error:
        pass
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ToolError(f"Invalid regular expression {pattern!r}: {exc}") from None
    raise ToolError(f"The pattern {pattern!r} needs look-around or backreferences, which only a backtracking "
                    "engine has, and such patterns can take forever. Rewrite it without them.")


def _rg_env() -> dict[str, str]:
    """rg's environment: ours without credentials (sandbox/secrets.py)."""
    from midstream.sandbox.secrets import without_secrets

    return without_secrets(os.environ)


def _walk_args(rg: str) -> list[str]:
    command = [rg, "--hidden", "--no-require-git", "--no-ignore-dot", "--no-ignore-global", "--no-ignore-exclude",
               "--no-ignore-parent", "--no-messages", "--color=never", "--sort=path"]
    for name in DEFAULT_IGNORED_DIRS:
        command += ["--glob", f"!{name}/"]
    return command


def _rg_files(root: Path, base: Path) -> list[str] | None:
    """Every file below ``base`` that is not ignored, workspace-relative, sorted; None if rg cannot run."""
    rg = ripgrep()
    if rg is None:
        return None
    relative = base.relative_to(root).as_posix()
    try:
        done = subprocess.run([*_walk_args(rg), "--files", "--", relative], cwd=root, capture_output=True,
                              env=_rg_env(), timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode not in (0, 1):
        return None
    lines = done.stdout.decode("utf-8", "surrogateescape").splitlines()
    return [line[2:] if line.startswith("./") else line for line in lines]


def _rg(workspace: Path, rg: str, pattern: str, target: Path, glob: str, ignore_case: bool) -> list[str] | None:
    root = workspace.resolve()
    command = [*_walk_args(rg), "--line-number", "--no-heading", "--with-filename",
               "--max-columns=1000", "--max-columns-preview"]  # a 1 GB line costs 1,000 columns of output
    if glob:
        # A --glob include would override .gitignore in rg; a file type filters without doing so.
        command += ["--type-add", f"midstream:{glob}", "--type", "midstream"]
    if ignore_case:
        command.append("--ignore-case")
    relative = target.relative_to(root).as_posix()
    command += ["--regexp", pattern, "--", relative if relative != "." else "."]
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                              env=_rg_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode not in (0, 1):  # 2: rg could not parse the pattern; let Python try
        return None
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    return [line[2:] if line.startswith("./") else line for line in lines]


def _python_grep(workspace: Path, compiled: Any, target: Path, glob: str) -> list[str]:
    import pathspec

    rules = IgnoreRules(workspace)
    name_spec = pathspec.PathSpec.from_lines("gitignore", [glob]) if glob else None
    if target.is_file():
        candidates = [target.relative_to(rules.root).as_posix()]
    else:
        candidates = sorted(rel for rel, is_dir in rules.walk(target) if not is_dir)
    matches = []
    for relative in candidates:
        full = rules.root / relative
        if full.is_symlink() or (name_spec and not name_spec.match_file(relative)):
            continue
        try:
            if is_binary(full):
                continue
            with full.open(encoding="utf-8", errors="replace", newline="") as f:
                for number, line in enumerate(f, start=1):
                    text = line.rstrip("\r\n")
                    if compiled.search(text):
                        matches.append(f"{relative}:{number}:{text}")
        except OSError:
            continue
    return matches
