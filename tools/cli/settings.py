"""Settings files: the user's ``$XDG_CONFIG_HOME/midstream/settings.toml`` and the project's
``.midstream/settings.toml``, read with the standard library's ``tomllib``.

Precedence, lowest first: the option's default, the user file, the project file, the option's
environment variable (``ANTHROPIC_MODEL``, or ``OPENAI_MODEL`` with ``provider = "openai"``), the
flag. Keys are the ``key`` column of the option table (tools/cli/options.py) and the sandbox's own
keys (``SANDBOX_KEYS``); an unknown key or a bad value stops the start with one line naming the file
and line.

A project file comes with the repository: anyone who can push to it writes it. So it may tighten,
never redirect or enlarge (``PROJECT_RULES``): it never chooses the provider, the model or anything
else that decides where the conversation goes, never widens what a command can see; budgets and
timeouts may only go down, the countdown only up, the mode and isolation only stricter. A key the
table does not name is refused. The start-up line names each project setting that applied and each
that was refused, with why.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midstream.sandbox.protected import CONFIG_DIR
from midstream.tools.cli.options import OPTIONS, Option, SettingError, check_value
from midstream.tools.ui.sanitise import shown
from midstream.tools.wire.providers import PROVIDERS

__all__ = ["PROJECT_RULES", "SANDBOX_KEYS", "Settings", "apply_sandbox", "project_settings_file", "resolve",
           "user_settings_file"]

# Settings-file keys of the sandbox (no flag): what every command may see, and its limits.
SANDBOX_KEYS: dict[str, tuple[type, str]] = {
    "sandbox_read_only": (list, "paths every command sees read-only"),
    "sandbox_writable": (list, "paths every command may write"),
    "sandbox_processes": (int, "processes and threads one command may have"),
    "sandbox_memory_mb": (int, "memory one command may use, in MiB"),
}

# What a project's settings file may do with each key: "lower", "raise", a ranking from loosest to
# strictest, or a reason it may never set it.
_WHERE = "it chooses where the conversation goes"
PROJECT_RULES: dict[str, str | tuple[Any, ...]] = {
    "provider": _WHERE, "model": _WHERE + " (a proxy routes by model name) and what it costs",
    "sandbox_read_only": "it widens what every command can see", "sandbox_writable": "it widens what commands write",
    "mode": ("auto", "ask", "read-only"), "isolation": ("none", "auto", "bwrap"), "network": (True, False),
    "cache_ttl": ("1h", "5m"), "grace": "raise",
    "max_tokens": "lower", "max_requests": "lower", "max_attempts": "lower", "workers": "lower",
    "idle_timeout": "lower", "request_timeout": "lower", "context_window": "lower",
    "sandbox_processes": "lower", "sandbox_memory_mb": "lower",
}

_BY_KEY = {option.key: option for option in OPTIONS if option.key}
TABLES = ("mcp_servers", "hooks")  # read by their own parts, not options


def user_settings_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "midstream" / "settings.toml"


def project_settings_file(workspace: Path) -> Path:
    return workspace / CONFIG_DIR / "settings.toml"


@dataclass
class Settings:
    """Each option's value and where it came from ("default", a file:line, an env var, or the flag)."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    project: list[str] = field(default_factory=list)  # "key = value" for each project setting applied
    refused: list[str] = field(default_factory=list)  # "key = value (why)" for each one refused
    # Tables another part reads itself, as (file, is it the project's, value): [mcp_servers.NAME] (tools/mcp/),
    # [[hooks.EVENT]] (tools/hooks/).
    tables: dict[str, list[tuple[Path, bool, Any]]] = field(default_factory=dict)

    def __getitem__(self, dest: str) -> Any:
        return self.values[dest]

    def explicit(self, dest: str) -> bool:
        """Chosen by the person (a flag, a variable or a settings file), not a built-in default."""
        return self.sources.get(dest, "default") != "default"


def _line_of(text: str, key: str) -> int | None:
    """The line where ``key`` is assigned or opens a table (tomllib reports no positions)."""
    quoted = re.escape(key)
    pattern = re.compile(rf"^\s*(\[+\s*)?(\"{quoted}\"|'{quoted}'|{quoted})\s*(=|\]|\.)")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def _read(path: Path) -> tuple[dict[str, Any], str]:
    try:  # non-blocking, and only a regular file: a FIFO planted as a repository's settings must not hang start-up
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise SettingError(f"{path}: not a regular file")
            text = file.read().decode("utf-8")
    except FileNotFoundError:
        return {}, ""
    except (OSError, UnicodeDecodeError) as error:
        raise SettingError(f"{path}: cannot be read ({error})") from None
    import tomllib  # only when there is a file: ~7-25 ms of start-up every run otherwise

    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as error:
        # tomllib says "... (at line 3, column 7)": put the place first, as compilers do.
        message = str(error)
        if match := re.search(r"\(at line (\d+), column \d+\)$", message):
            raise SettingError(f"{path}:{match.group(1)}: {message[: match.start()].strip()}") from None
        raise SettingError(f"{path}: {message}") from None


def _project_refuses(key: str, value: Any, current: Any) -> str:
    """Why a project file may not set ``key`` to ``value`` over ``current``; "" when it may."""
    rule = PROJECT_RULES.get(key, "a project may not set it")
    if isinstance(rule, tuple):  # an unset current value may be the loosest: never let a project choose that
        looser = rule.index(value) < rule.index(current) if current in rule else rule.index(value) == 0
        return f"a project may only make it stricter than {current!r}" if looser else ""
    if rule in ("lower", "raise"):
        if current is None:
            return "a project may only lower a limit that is set"
        worse = value > current if rule == "lower" else value < current
        return f"a project may only {rule} it from {current!r}" if worse else ""
    return rule


def _check(key: str, option: Option | None, value: Any, where: str) -> Any:
    if option is not None:
        return check_value(option, value, where, from_text=False)
    kind, _ = SANDBOX_KEYS[key]
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.startswith(("/", "~")) for v in value):
            raise SettingError(f"{where}: {value!r} is not a list of absolute paths")
        return tuple(Path(os.path.expanduser(v)) for v in value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingError(f"{where}: {value!r} is not a whole number of at least 1")
    return value


def _apply_file(settings: Settings, path: Path, *, project: bool) -> None:
    data, text = _read(path)
    for key, value in data.items():
        if key in TABLES:
            settings.tables.setdefault(key, []).append((path, project, value))
            continue
        line = _line_of(text, key)
        where = f"{path}:{line}" if line else str(path)
        option = _BY_KEY.get(key)
        if option is None and key not in SANDBOX_KEYS and project:  # base_url = …: named, never applied
            settings.refused.append(f"{key} = {value!r} ignored (not a setting; {_WHERE} if it were)"
                                    if "url" in key.lower() else f"{key} = {value!r} ignored (not a setting)")
            continue
        if option is None and key not in SANDBOX_KEYS:
            known = ", ".join(sorted([*_BY_KEY, *SANDBOX_KEYS, *TABLES]))
            raise SettingError(f"{where}: unknown setting {key!r} (known: {known})")
        checked = _check(key, option, value, f"{where}: {key}")
        dest = option.dest if option else key
        if project and (why := _project_refuses(key, checked, settings.values.get(dest))):
            settings.refused.append(f"{key} = {value!r} ignored ({why})")
            continue
        if project:
            settings.project.append(f"{key} = {value!r}")
        settings.values[dest] = checked
        settings.sources[dest] = where


def resolve(args: argparse.Namespace, workspace: Path) -> Settings:
    """Every option's value: defaults < user file < project file < environment < flag."""
    settings = Settings()
    for option in OPTIONS:
        settings.values[option.dest] = option.default
        settings.sources[option.dest] = "default"
    for key in SANDBOX_KEYS:
        settings.values[key] = None
        settings.sources[key] = "default"
    _apply_file(settings, user_settings_file(), project=False)
    project = project_settings_file(workspace)
    if project.resolve() != user_settings_file().resolve():
        _apply_file(settings, project, project=True)
    for option in OPTIONS:  # in order: --provider is settled before the options whose variable it names
        provider = PROVIDERS.get(str(settings.values.get("provider")), PROVIDERS["anthropic"])
        env = option.env and option.env.format(PROVIDER=provider.env_prefix)
        if env and (value := os.environ.get(env)):
            settings.values[option.dest] = check_value(option, value, f"${env}", from_text=True)
            settings.sources[option.dest] = f"${env}"
        raw = getattr(args, option.dest, None)
        if raw is not None:
            settings.values[option.dest] = check_value(option, raw, option.flag, from_text=True)
            settings.sources[option.dest] = option.flag
    return settings


def apply_sandbox(settings: Settings) -> None:
    """Hand the sandbox keys to the sandbox: added paths, and per-command limits."""
    from midstream.sandbox import hostview, limits

    hostview.configure(hostview.HostView(read_only=settings["sandbox_read_only"] or (),
                                         writable=settings["sandbox_writable"] or ()))
    processes, memory = settings["sandbox_processes"], settings["sandbox_memory_mb"]
    if processes or memory:
        default = limits.default_limits()
        limits.configure(limits.Limits(processes=processes or default.processes,
                                       memory=memory << 20 if memory else default.memory))


def show_warnings(settings: Settings, workspace: Path | None = None) -> None:
    """The warnings, and one line naming each project setting that applied and each that was refused."""
    for warning in settings.warnings:
        print(f"midstream: {shown(warning)}", file=sys.stderr, flush=True)
    if settings.project or settings.refused:
        parts = (["applied " + ", ".join(settings.project)] if settings.project else []) + settings.refused
        where = project_settings_file(workspace) if workspace else f"{CONFIG_DIR}/settings.toml"
        print(shown(f"midstream: project settings {where}: " + "; ".join(parts), one_line=True), file=sys.stderr,
              flush=True)

