"""Every option of the command line in one table: its flag, its settings-file key, type, range, default.

Adding an option is one ``Option(...)`` line in ``OPTIONS``: the parser, the settings files
(tools/cli/settings.py), the range check and the AgentConfig the command line builds (the field
of the same name, or ``field=``) all read it. A value from a flag and a value from a
settings file pass the same check, so a bad one gets the same one-line message naming where it
came from (``--grace`` or ``settings.toml:3``) and the allowed range.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from midstream.agent import AgentConfig
from midstream.sandbox.permissions import MODES
from midstream.tools.wire.providers import PROVIDERS

__all__ = ["OPTIONS", "Option", "SettingError", "build_parser", "check_value"]


class SettingError(ValueError):
    """A flag or setting with a value outside what it allows: one line, exit status 2."""


@dataclass(frozen=True)
class Option:
    """One option; ``key`` is its name in settings.toml (None: a flag only)."""

    flag: str
    key: str | None
    kind: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""
    env: str | None = None  # an environment variable between the settings files and the flag;
    # "{PROVIDER}" in it is the provider chosen (ANTHROPIC or OPENAI): --provider comes first in OPTIONS
    field: str | None = ""  # the AgentConfig field it sets: "" means the same name as the flag, None none

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def config_field(self) -> str | None:
        return self.dest if self.field == "" else self.field

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        unit = f" {self.unit}" if self.unit else ""
        if self.high is None:
            return f"at least {_number(self.low)}{unit}"
        return f"{_number(self.low)} to {_number(self.high)}{unit}"


def _number(value: float | None) -> str:
    """Whole numbers as written (10000000, not 1e+07); others as short as they go."""
    return str(int(value)) if value is not None and float(value).is_integer() else f"{value:g}"


_C = AgentConfig
OPTIONS: tuple[Option, ...] = (
    Option("--provider", "provider", str, _C.provider, "the wire: anthropic, the Messages API (ANTHROPIC_API_KEY, "
           "ANTHROPIC_BASE_URL); openai, Chat Completions for OpenAI, Ollama, llama.cpp, vLLM (OPENAI_API_KEY, "
           "OPENAI_BASE_URL)", choices=tuple(PROVIDERS)),
    Option("--model", "model", str, _C.model, f"model name (with --provider openai: $OPENAI_MODEL, else "
           f"{PROVIDERS['openai'].model})", env="{PROVIDER}_MODEL"),
    Option("--mode", "mode", str, None, "permission mode (default: auto where the sandbox works in a git "
           "repository, else ask; -p refuses destructive commands unless given)", choices=MODES),
    Option("--grace", "grace", float, _C.grace_seconds, "countdown before a destructive command runs in auto "
           "mode (0: none)", low=0, high=600, unit="seconds", field="grace_seconds"),
    Option("--isolation", "isolation", str, _C.isolation, "run shell commands under bubblewrap (auto: when it "
           "works here)", choices=("auto", "bwrap", "none")),
    Option("--cache-ttl", "cache_ttl", str, _C.cache_ttl, "prompt cache lifetime (1h costs 2x input per write "
           "instead of 1.25x)", choices=("5m", "1h")),
    Option("--max-tokens", "max_tokens", int, _C.max_tokens, "output budget of one model request",
           low=1, high=128_000, unit="tokens"),
    Option("--max-requests", "max_requests", int, _C.max_requests, "model requests for one message before "
           "the loop stops", low=1, high=10_000),
    Option("--max-attempts", "max_attempts", int, _C.max_attempts, "tries of one request before giving up",
           low=1, high=100),
    Option("--idle-timeout", "idle_timeout", float, _C.idle_timeout, "seconds without a stream event before "
           "the reply counts as dropped", low=1, high=3600, unit="seconds"),
    Option("--request-timeout", "request_timeout", float, _C.request_timeout, "longest one model request may "
           "take in all", low=1, high=86400, unit="seconds"),
    Option("--network", "network", bool, False, "let shell commands use the network (the sandbox has none by "
           "default)"),
    Option("--workers", "workers", int, _C.workers, "tool calls that may run at once", low=1, high=64),
    Option("--context-window", "context_window", int, None, "the model's context window (known for Claude "
           "models); compaction keeps within it", low=1, high=10_000_000, unit="tokens"),
    Option("--output-format", None, str, "text", "text; json: one object with the result at the "
           "end; stream-json: Claude Code's line types and midstream's live events, one per line",
           choices=("text", "json", "stream-json"), field=None),
    Option("--theme", "theme", str, "auto", "colours for a dark or a light terminal background (auto: the "
           "terminal's answer, else $COLORFGBG, else dark)", choices=("auto", "dark", "light"), field=None),
)

# Where each option is listed in --help (options not named here are listed under "model and limits").
_GROUP_OF = {
    "provider": "model and limits", "model": "model and limits",
    "mode": "permissions and sandbox", "grace": "permissions and sandbox", "isolation": "permissions and sandbox",
    "network": "permissions and sandbox", "output_format": "output", "theme": "output",
}
_HELP_GROUPS = ("session", "model and limits", "permissions and sandbox", "output", "other")
HELP_EPILOG = """examples:
  midstream                                  an interactive session in this repository
  midstream "fix the failing test"           the same, starting with this message
  midstream -p "explain src/app.py"          one task, the answer on stdout, then exit
  git diff | midstream -p "review this"      piped text is added after the task
  midstream -c                               pick up the latest session here
  midstream --demo                           an offline demo (no key, no network)

environment:
  ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL      the Messages API's key and address (any compatible server)
  ANTHROPIC_MODEL                            the model, below --model
  OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL   the same for --provider openai (Ollama, llama.cpp, vLLM)
  MIDSTREAM_LOG_LEVEL                        the log file's level (default INFO)
  XDG_CONFIG_HOME, XDG_STATE_HOME            where settings and state live (below)

settings (TOML, each key as in "setting:" above; a flag wins over an environment variable, which wins
over the files):
  ~/.config/midstream/settings.toml          yours, for every repository
  .midstream/settings.toml                   the repository's: may tighten safety, never loosen it
sessions, history and logs: ~/.local/state/midstream/

in a session: /help lists the commands and keys."""


def check_value(option: Option, value: Any, where: str, *, from_text: bool) -> Any:
    """The value converted to the option's type, or SettingError naming ``where`` and the range."""
    shown = value if from_text else repr(value)
    if option.kind is bool:
        if not isinstance(value, bool):
            raise SettingError(f"{where}: {shown} is not true or false")
        return value
    if option.kind is str:
        if not isinstance(value, str):
            raise SettingError(f"{where}: {shown} is not a string")
        if option.choices and value not in option.choices:
            raise SettingError(f"{where}: {shown} is not allowed; use {option.allowed()}")
        if not option.choices and not value.strip():
            raise SettingError(f"{where}: must not be empty")
        return value
    number: float
    try:
        if isinstance(value, bool) or (not from_text and not isinstance(value, int | float)):
            raise ValueError
        if option.kind is int:
            if isinstance(value, float) or (from_text and not value.strip().lstrip("+-").isdigit()):
                raise ValueError
            number = int(value)
        else:
            number = float(value)
    except (ValueError, OverflowError):
        kind = "a whole number" if option.kind is int else "a number"
        raise SettingError(f"{where}: {shown} is not {kind}; use {option.allowed()}") from None
    if not math.isfinite(number) or (option.low is not None and number < option.low) or (
            option.high is not None and number > option.high):
        raise SettingError(f"{where}: {shown} is out of range; use {option.allowed()}")
    return number


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, not the usage block
        self.exit(2, f"midstream: {message} (see midstream --help)\n")


def build_parser(version: str) -> argparse.ArgumentParser:
    """The parser: the table's options (their values checked later, with the settings) and the rest."""
    parser = _Parser(prog="midstream", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=HELP_EPILOG,
                     description="A coding agent whose tools start the moment their call is complete.")
    groups = {name: parser.add_argument_group(name) for name in _HELP_GROUPS}
    parser.add_argument("prompt", nargs="?", help="start the interactive session with this first message")
    parser.add_argument("--version", action="version", version=f"midstream {version}")
    session = groups["session"]
    session.add_argument("-p", "--print", dest="task", metavar="TASK",
                         help="run one task without the prompt and exit ('-' reads the task from stdin; "
                         "text piped in is added after it)")
    session.add_argument("--demo", action="store_true", help="run the offline demo (no key, no network)")
    session.add_argument("--cwd", type=Path, default=Path.cwd(), help="the workspace (default: here)")
    resume = session.add_mutually_exclusive_group()
    resume.add_argument("-c", "--continue", dest="continue_latest", action="store_true",
                        help="resume the latest session of this workspace")
    resume.add_argument("--resume", metavar="ID", nargs="?", const="",
                        help="resume the session with this id (without one: list this workspace's sessions)")
    session.add_argument("--undo", action="store_true",
                         help="undo the last turn of this workspace's latest session (again: the turn before)")
    for option in OPTIONS:
        group = groups[_GROUP_OF.get(option.dest, "model and limits")]
        if option.kind is bool:  # a switch: present means on; the settings files may say either
            group.add_argument(option.flag, dest=option.dest, default=None, action="store_const", const=True,
                                help=f"{option.help} (setting: {option.key})" if option.key else option.help)
            continue
        if option.choices:
            metavar = "{" + ",".join(option.choices) + "}"
        else:
            metavar = {int: "N", float: "SECONDS" if option.unit == "seconds" else "X"}.get(option.kind, "NAME")
        notes = [f"default {option.default:g}" if isinstance(option.default, int | float) else
                 f"default {option.default}" if option.default is not None else ""]
        notes.append(option.allowed() if option.low is not None else "")
        notes.append(f"setting: {option.key}" if option.key else "")
        shown = "; ".join(note for note in notes if note)
        group.add_argument(option.flag, dest=option.dest, default=None, metavar=metavar,
                           help=f"{option.help} ({shown})" if shown else option.help)
    output, other = groups["output"], groups["other"]
    output.add_argument("--plain", action="store_true", help="no live region or colours, even on a terminal")
    output.add_argument("--svg", type=Path, metavar="FILE", help="save what the terminal showed as an SVG picture")
    output.add_argument("--web", action="store_true", help="serve a live view of the session to a browser on "
                        "127.0.0.1 (prints its URL; /web does it later): watch, answer and stop from any tab")
    output.add_argument("--web-port", type=_port, default=0, metavar="N",
                        help="the browser view's port (default: a free one)")
    other.add_argument("--no-cache", action="store_true", help="send no cache_control breakpoints")
    other.add_argument("--record", type=Path, metavar="DIR", help="save each request and raw reply in DIR")
    other.add_argument("--replay", type=Path, metavar="DIR",
                       help="answer from a --record recording instead (read-only unless --mode is given)")
    other.add_argument("--mcp-config", action="append", default=[], metavar="FILE",
                       help="MCP servers from this JSON file (Claude Code's .mcp.json shape) or inline JSON; "
                            "may be repeated; they start in -p too")
    return parser


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535; 0: a free one)")
    return int(text)


def parse(argv: Sequence[str] | None, version: str) -> argparse.Namespace:
    return build_parser(version).parse_args(argv)
