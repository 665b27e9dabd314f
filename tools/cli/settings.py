"""Settings files: the user's ``$XDG_CONFIG_HOME/midstream/settings.toml`` and the project's
``.midstream/settings.toml``, read with the standard library's ``tomllib``.

Precedence, lowest first: the option's default, the user file, the project file, the option's
environment variable (``ANTHROPIC_MODEL``, or ``OPENAI_MODEL`` with ``provider = "openai"``), the
flag. Keys are the ``key`` column of the option table (tools/cli/options.py); an unknown key or a
bad value stops the start with one line naming the file and line. A project file comes with the
repository, so it may tighten safety but not loosen it: a ``mode = "auto"``, ``isolation = "none"``,
``network = true`` or a shorter ``grace`` there is ignored with a warning.
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

from midstream.tools.cli.options import OPTIONS, SettingError, check_value

__all__ = ["Settings", "project_settings_file", "resolve", "user_settings_file"]

_BY_KEY = {option.key: option for option in OPTIONS if option.key}
TABLES = ("mcp_servers", "hooks")  # read by their own parts, not options


def user_settings_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "midstream" / "settings.toml"


def project_settings_file(workspace: Path) -> Path:
    return workspace / ".midstream" / "settings.toml"


@dataclass
class Settings:
    """Each option's value and where it came from ("default", a file:line, an env var, or the flag)."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
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


def _apply_file(settings: Settings, path: Path, *, project: bool) -> None:
    data, text = _read(path)
    for key, value in data.items():
        if key in TABLES:
            settings.tables.setdefault(key, []).append((path, project, value))
            continue
        line = _line_of(text, key)
        where = f"{path}:{line}" if line else str(path)
        option = _BY_KEY.get(key)
        if option is None:
            known = ", ".join(sorted(_BY_KEY))
            raise SettingError(f"{where}: unknown setting {key!r} (known: {known})")
        checked = check_value(option, value, f"{where}: {key}", from_text=False)
        if project and (checked in option.project_may_not
                        or option.project_at_least is not None and checked < option.project_at_least):
            settings.warnings.append(
                f"{where}: {key} = {value!r} ignored: a project's settings may not loosen the sandbox "
                f"(set it in {user_settings_file()} or pass {option.flag} {value})")
            continue
        settings.values[option.dest] = checked
        settings.sources[option.dest] = where


def resolve(args: argparse.Namespace, workspace: Path) -> Settings:
    """Every option's value: defaults < user file < project file < environment < flag."""
    settings = Settings()
    for option in OPTIONS:
        settings.values[option.dest] = option.default
        settings.sources[option.dest] = "default"
    _apply_file(settings, user_settings_file(), project=False)
    project = project_settings_file(workspace)
    if project.resolve() != user_settings_file().resolve():
        _apply_file(settings, project, project=True)
    for option in OPTIONS:
        env = option.env and option.env.format(PROVIDER=str(settings.values.get("provider", "anthropic")).upper())
        if env and (value := os.environ.get(env)):
            settings.values[option.dest] = check_value(option, value, f"${env}", from_text=True)
            settings.sources[option.dest] = f"${env}"
        raw = getattr(args, option.dest, None)
        if raw is not None:
            settings.values[option.dest] = check_value(option, raw, option.flag, from_text=True)
            settings.sources[option.dest] = option.flag
    return settings


def show_warnings(settings: Settings) -> None:
    for warning in settings.warnings:
        print(f"midstream: {warning}", file=sys.stderr, flush=True)

