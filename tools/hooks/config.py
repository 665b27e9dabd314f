"""The ``[[hooks.EVENT]]`` tables of settings.toml, in Claude Code's schema and meaning.

```toml
[[hooks.PreToolUse]]
matcher = "Bash"              # Claude Code's tool names match midstream's equivalents
hooks = [{ type = "command", command = "./check.sh", timeout = 30, fail_closed = true }]
```

A matcher is Claude Code's: empty or ``*`` matches every tool; a plain word or ``A|B`` list
(letters, digits, ``_``, ``|``) names tools exactly; anything else is a regular expression searched
in the name (RE2, so a repository's pattern cannot hang us). Each midstream tool answers to its own
name and to Claude Code's (``bash`` to ``Bash``, ``read_file`` to ``Read`` …), so hooks written for
Claude Code run unchanged. ``timeout`` is in seconds (default 60). ``fail_closed`` (ours) makes a
hook's failure (exit status other than 0 and 2, a timeout, a command that cannot start) block
instead of being shown and passed. Events Claude Code has and midstream has not, and hook types
other than ``command``, are ignored with a warning; anything else malformed stops the start.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CLAUDE_NAMES",
    "EVENTS",
    "HookCommand",
    "HookConfigError",
    "hook_names",
    "hooks_from_tables",
    "launch_problem",
    "matches",
    "parse_hooks",
]

EVENTS = ("PreToolUse", "PostToolUse", "UserPromptSubmit", "Stop", "SessionStart", "SessionEnd")
_THEIRS_ONLY = ("PostToolUseFailure", "PermissionRequest", "PermissionDenied", "Notification", "SubagentStart",
                "SubagentStop", "PreCompact", "PostCompact")
_TOOL_EVENTS = ("PreToolUse", "PostToolUse")
DEFAULT_TIMEOUT = 60.0

# midstream's name -> the names Claude Code's hooks know the same tool by.
CLAUDE_NAMES: dict[str, tuple[str, ...]] = {
    "bash": ("Bash",),
    "read_file": ("Read",),
    "write_file": ("Write",),
    "edit_file": ("Edit", "MultiEdit"),
    "glob": ("Glob",),
    "grep": ("Grep",),
    "list_dir": ("LS",),
}
_SIMPLE = re.compile(r"[A-Za-z0-9_|]+")
_KNOWN_KEYS = {"type", "command", "timeout", "fail_closed", "statusMessage"}


class HookConfigError(ValueError):
    """A hooks table that cannot be run as written; the message names the file and the entry."""


@dataclass(frozen=True)
class HookCommand:
    """One command to run at one event, and where it was defined."""

    event: str
    matcher: str
    command: str
    timeout: float = DEFAULT_TIMEOUT
    fail_closed: bool = False
    project: bool = False  # defined by the repository: sandboxed, and run only once approved
    where: str = ""  # file:line, for every message about it
    status: str = ""  # Claude Code's statusMessage: what the status line says while it runs

    def definition(self) -> dict[str, Any]:
        """What the person approves: everything that decides what runs and when."""
        return {"event": self.event, "matcher": self.matcher, "command": self.command,
                "timeout": self.timeout, "fail_closed": self.fail_closed}

    def label(self) -> str:
        """``PreToolUse hook `./check.sh``` for messages to the person."""
        command = " ".join(self.command.split())
        return f"{self.event} hook `{command if len(command) <= 60 else command[:59] + '…'}`"


def hook_names(tool: str) -> tuple[str, ...]:
    """Every name a hook's matcher may use for this tool: midstream's own, then Claude Code's."""
    return (tool, *CLAUDE_NAMES.get(tool, ()))


def matches(matcher: str, names: tuple[str, ...]) -> bool:
    """Claude Code's matcher rule over every name the tool answers to."""
    if matcher in ("", "*"):
        return True
    if _SIMPLE.fullmatch(matcher):
        wanted = matcher.split("|")
        return any(name in wanted for name in names)
    compiled = _compile(matcher)
    return any(compiled.search(name) for name in names)


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> Any:
    import re2

    return re2.compile(pattern)


def _line_of(text: str, event: str, number: int) -> int | None:
    """The line of the ``number``-th ``[[hooks.EVENT]]`` header (tomllib reports no positions)."""
    header = re.compile(rf"^\s*\[\[\s*hooks\s*\.\s*\"?{re.escape(event)}\"?\s*\]\]")
    seen = 0
    for line_number, line in enumerate(text.splitlines(), start=1):
        if header.match(line):
            seen += 1
            if seen == number:
                return line_number
    return None


def parse_hooks(table: Any, path: Path, text: str, *, project: bool,
                warnings: list[str] | None = None) -> list[HookCommand]:
    """The commands of one settings file's ``hooks`` table; ``warnings`` collects what was ignored."""
    warnings = warnings if warnings is not None else []
    if not isinstance(table, dict):
        raise HookConfigError(f"{path}: hooks must be a table of events ([[hooks.PreToolUse]] …)")
    found: list[HookCommand] = []
    for event, groups in table.items():
        if event in _THEIRS_ONLY:
            warnings.append(f"{path}: hooks.{event}: midstream has no {event} event; these hooks are ignored "
                            f"(it has {', '.join(EVENTS)})")
            continue
        if event not in EVENTS:
            raise HookConfigError(f"{path}: unknown hook event {event!r} (known: {', '.join(EVENTS)})")
        if not isinstance(groups, list):
            raise HookConfigError(f"{path}: hooks.{event} must be a list of tables ([[hooks.{event}]])")
        for number, group in enumerate(groups, start=1):
            line = _line_of(text, event, number)
            where = f"{path}:{line}" if line else f"{path} (hooks.{event} entry {number})"
            found += _parse_group(event, group, where, project, warnings)
    return found


def _parse_group(event: str, group: Any, where: str, project: bool, warnings: list[str]) -> list[HookCommand]:
    if not isinstance(group, dict):
        raise HookConfigError(f"{where}: each hooks.{event} entry must be a table with `hooks = [...]`")
    unknown = set(group) - {"matcher", "hooks"}
    if unknown:
        raise HookConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} in hooks.{event} (known: matcher, hooks)")
    matcher = group.get("matcher", "")
    if not isinstance(matcher, str):
        raise HookConfigError(f"{where}: matcher must be a string (a tool name, A|B, or a regular expression)")
    if matcher not in ("", "*") and not _SIMPLE.fullmatch(matcher):
        try:
            _compile(matcher)
        except Exception as error:  # re2.error, and whatever else a malformed pattern raises
            raise HookConfigError(f"{where}: matcher {matcher!r} is not a regular expression ({error})") from None
    if matcher and event not in _TOOL_EVENTS and event != "SessionStart":
        warnings.append(f"{where}: hooks.{event} has no matcher (its hooks run every time); {matcher!r} is ignored")
        matcher = ""
    entries = group.get("hooks")
    if not isinstance(entries, list) or not entries:
        raise HookConfigError(f"{where}: hooks.{event} needs `hooks = [{{ type = \"command\", command = \"…\" }}]`")
    commands = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise HookConfigError(f"{where}: each hook must be a table like {{ type = \"command\", command = \"…\" }}")
        kind = entry.get("type", "command")
        if kind != "command":
            warnings.append(f"{where}: a hook of type {kind!r} is ignored: midstream runs only type = \"command\"")
            continue
        command = entry.get("command")
        if not isinstance(command, str) or not command.strip():
            raise HookConfigError(f"{where}: a command hook needs `command = \"…\"` (a shell command)")
        timeout = entry.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
            raise HookConfigError(f"{where}: timeout must be a number of seconds between 0 and 3600, not {timeout!r}")
        fail_closed = entry.get("fail_closed", False)
        if not isinstance(fail_closed, bool):
            raise HookConfigError(f"{where}: fail_closed must be true or false, not {fail_closed!r}")
        if extra := sorted(set(entry) - _KNOWN_KEYS):
            warnings.append(f"{where}: hook setting {extra[0]!r} is not one midstream knows; ignored")
        status = entry.get("statusMessage", "")
        commands.append(HookCommand(event, matcher, command, float(timeout), fail_closed, project, where,
                                    status if isinstance(status, str) else ""))
    return commands


def hooks_from_tables(tables: list[tuple[Path, bool, Any]], warnings: list[str]) -> list[HookCommand]:
    """Every command of the settings files' ``hooks`` tables (tools/cli/settings.py: file, project?, value)."""
    found: list[HookCommand] = []
    for path, project, value in tables:
        found += parse_hooks(value, path, _text_of(path), project=project, warnings=warnings)
    return found


def _text_of(path: Path) -> str:
    """The settings file's text again, for line numbers only (settings.py has checked it is a regular file)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


_BUILTINS = frozenset(": . source exit cd export set unset eval exec test [ [[ if for while until case { ( ! true "
                      "false echo printf read return shift trap umask wait command builtin local declare typeset let "
                      "time type hash alias".split())


def launch_problem(hook: HookCommand, workspace: Path, path: str | None = None) -> str | None:
    """Why the command's program cannot start, when that can be told without running it (a missing or
    non-executable script, a program not on PATH); None when it looks startable or cannot be told."""
    import os
    import shlex
    import shutil

    try:
        words = shlex.split(hook.command)
    except ValueError as error:
        return f"the command is not valid shell ({error})"
    words = [word for word in words if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word)]  # VAR=value prefixes
    if not words or words[0] in _BUILTINS or any(c in words[0] for c in "$`*?"):
        return None
    program = os.path.expanduser(words[0])
    if "/" not in program:
        found = shutil.which(program, path=path if path is not None else os.environ.get("PATH", os.defpath))
        return None if found else f"{program}: not found on PATH"
    target = workspace / program
    if not target.exists():
        return f"{words[0]}: no such file"
    if not os.access(target, os.X_OK) or target.is_dir():
        return f"{words[0]}: not executable (chmod +x it, or run it through its interpreter)"
    return None
