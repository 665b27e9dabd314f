"""MCP server definitions in the formats people already have, read into one ``ServerSpec`` each.

- ``--mcp-config FILE`` (or inline JSON) and a workspace ``.mcp.json``: Claude Code's shape,
  ``{"mcpServers": {"NAME": {"type": "stdio", "command": …, "args": […], "env": {…}},
  "NAME2": {"type": "http", "url": …, "headers": {…}}}}``;
- ``[mcp_servers.NAME]`` tables in settings.toml with Codex's keys (``command``, ``args``, ``env``,
  ``cwd``, ``url``, ``headers``/``http_headers``, ``env_http_headers``, ``bearer_token_env_var``,
  ``env_vars``, ``startup_timeout_sec``, ``tool_timeout_sec``, ``enabled``, ``required``,
  ``enabled_tools``, ``disabled_tools``), plus ours: ``tool_timeout_max_sec`` and ``trusted``.

``${VAR}`` and ``${VAR:-default}`` are expanded in every string. The person's own files (user
settings, ``--mcp-config``) are theirs; a project file's server is ``project`` and starts only once
approved (approvals.py). A definition can never carry the model's key: not by name, not by value.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "ServerSpec", "parse_json_servers", "parse_table_servers", "server_environment"]

DEFAULT_STARTUP_TIMEOUT = 10.0
DEFAULT_TOOL_TIMEOUT = 120.0  # idle: reset by each progress notification
DEFAULT_TOOL_TIMEOUT_MAX = 3600.0  # absolute, whatever the progress
# What a server inherits from our environment (Codex's default set); everything else comes from its `env`.
INHERITED = ("HOME", "LOGNAME", "PATH", "SHELL", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "TZ")
MODEL_KEYS = frozenset({"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"})
_KEYS = {"type", "command", "args", "env", "cwd", "url", "headers", "http_headers", "env_http_headers",
         "bearer_token_env_var", "env_vars", "startup_timeout", "startup_timeout_sec", "startup_timeout_ms",
         "tool_timeout", "tool_timeout_sec", "tool_timeout_max", "tool_timeout_max_sec", "enabled", "required",
         "enabled_tools", "disabled_tools", "trusted"}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A definition that cannot be used: one line naming the file and the server."""


@dataclass(frozen=True)
class ServerSpec:
    """One server as midstream will run it: everything expanded, checked and typed."""

    name: str
    source: str  # the file (or "--mcp-config") it came from, for the person
    project: bool  # from a repository's file: starts only once the person approved this definition
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # only the server's own; see server_environment
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    tool_timeout: float = DEFAULT_TOOL_TIMEOUT
    tool_timeout_max: float = DEFAULT_TOOL_TIMEOUT_MAX
    enabled: bool = True
    required: bool = False
    trusted: bool = False  # the person believes its readOnlyHint annotations
    enabled_tools: frozenset[str] | None = None
    disabled_tools: frozenset[str] = frozenset()
    named: bool = False  # given with --mcp-config: starts in -p too
    problem: str | None = None  # why it cannot start (a variable that is not set …), said when it would

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"

    def digest(self, workspace: Path) -> str:
        """What the person approves: exactly what would run, and where."""
        what = {"workspace": str(workspace), "name": self.name, "command": self.command, "args": list(self.args),
                "env": self.env, "cwd": self.cwd, "url": self.url, "headers": self.headers}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()

    def shown(self) -> str:
        """``python -m srv --flag`` or the URL: what it runs, for /mcp and the approval question."""
        if self.command is not None:
            return " ".join([self.command, *self.args])
        return str(self.url)

    def offers(self, tool: str) -> bool:
        return (self.enabled_tools is None or tool in self.enabled_tools) and tool not in self.disabled_tools


def server_environment(spec: ServerSpec, environ: Mapping[str, str]) -> dict[str, str]:
    """A stdio server's environment: the inherited allowlist, then its own ``env`` (with its ``env_vars``)."""
    return {n: environ[n] for n in INHERITED if n in environ} | spec.env


def read_text(path: Path, limit: int = 1 << 20) -> str:
    """A regular file's text, opened without blocking (a FIFO planted in a repository must not hang us)
    and at most ``limit`` bytes (nor may a huge one)."""
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise ConfigError(f"{path}: not a regular file")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(f"{path}: over {limit // (1 << 20)} MB, too big for server definitions")
    return data.decode("utf-8")


def parse_json_servers(text: str, source: str, *, project: bool, named: bool, api_key: str | None,
                       environ: Mapping[str, str], warnings: list[str]) -> list[ServerSpec]:
    """Claude Code's ``{"mcpServers": {...}}``; a project file's problems are warnings, the person's errors."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return _problem(f"{source}:{error.lineno}: not JSON ({error.msg})", project, warnings)
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        return _problem(f"{source}: no \"mcpServers\" object", project, warnings)
    return _specs(servers, source, project=project, named=named, api_key=api_key, environ=environ,
                  warnings=warnings)


def parse_table_servers(table: Any, source: str, *, project: bool, api_key: str | None,
                        environ: Mapping[str, str], warnings: list[str]) -> list[ServerSpec]:
    """settings.toml's ``[mcp_servers.NAME]`` tables."""
    if not isinstance(table, dict):
        return _problem(f"{source}: mcp_servers must be a table of tables ([mcp_servers.NAME])", project, warnings)
    return _specs(table, source, project=project, named=False, api_key=api_key, environ=environ, warnings=warnings)


def _problem(message: str, project: bool, warnings: list[str]) -> list[ServerSpec]:
    if not project:
        raise ConfigError(message)
    warnings.append(message + "; its MCP servers are ignored")
    return []


def _specs(servers: dict[str, Any], source: str, *, project: bool, named: bool, api_key: str | None,
           environ: Mapping[str, str], warnings: list[str]) -> list[ServerSpec]:
    specs = []
    for name, entry in servers.items():
        try:
            specs.append(_spec(str(name), entry, source, project=project, named=named, api_key=api_key,
                               environ=environ, warnings=warnings))
        except ConfigError as error:
            if not project:
                raise
            warnings.append(f"{error}; ignored")
    return specs


def _spec(name: str, entry: Any, source: str, *, project: bool, named: bool, api_key: str | None,
          environ: Mapping[str, str], warnings: list[str]) -> ServerSpec:
    where = f"{source}: MCP server {name!r}"
    if not _NAME.match(name):
        raise ConfigError(f"{where}: a name is 1-64 letters, digits, '_', '-' or '.'")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be an object with a command or a url")
    if unknown := sorted(set(entry) - _KEYS):
        warnings.append(f"{where}: unknown key{'s' * (len(unknown) > 1)} {', '.join(unknown)} ignored")
    missing: list[str] = []

    def expand(value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string")

        def one(match: re.Match[str]) -> str:
            variable, default = match.group(1), match.group(2)
            if variable in MODEL_KEYS:
                raise ConfigError(f"{where}: {key} names ${variable}; a server never gets the model's key")
            if variable in environ:
                return environ[variable]
            if default is None:
                missing.append(variable)
                return ""
            return default

        return _VAR.sub(one, value)

    def strings(key: str) -> tuple[str, ...]:
        value = entry.get(key, [])
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list of strings")
        return tuple(expand(v, key) for v in value)

    def mapping(key: str) -> dict[str, str]:
        value = entry.get(key, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a table of strings")
        return {str(k): expand(v, f"{key}.{k}") for k, v in value.items()}

    kind = entry.get("type", "stdio" if "command" in entry else "http")
    if kind == "streamable-http":
        kind = "http"
    if kind not in ("stdio", "http"):
        raise ConfigError(f"{where}: type {kind!r} is not supported (stdio or http; SSE servers are not)")
    if kind == "stdio" and "command" not in entry:
        raise ConfigError(f"{where}: a stdio server needs a command")
    if kind == "http" and "url" not in entry:
        raise ConfigError(f"{where}: an http server needs a url")
    command = expand(entry["command"], "command") if kind == "stdio" else None
    url = expand(entry["url"], "url") if kind == "http" else None
    if url is not None and not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"{where}: url {url!r} is not an http(s) URL")
    env = mapping("env")
    if model_keys := sorted(MODEL_KEYS & set(env)):
        raise ConfigError(f"{where}: env sets {', '.join(model_keys)}; a server never gets the model's key")
    headers = mapping("headers") | mapping("http_headers")
    for header, variable in mapping("env_http_headers").items():
        if variable in MODEL_KEYS:
            raise ConfigError(f"{where}: env_http_headers names {variable}; a server never gets the model's key")
        if variable in environ:
            headers[header] = environ[variable]
    if (token_var := entry.get("bearer_token_env_var")) is not None:
        token_var = expand(token_var, "bearer_token_env_var")
        if token_var in MODEL_KEYS:
            raise ConfigError(f"{where}: bearer_token_env_var names {token_var}; a server never gets the model's key")
        if token_var in environ:
            headers["Authorization"] = f"Bearer {environ[token_var]}"
        else:
            missing.append(token_var)
    env_vars = tuple(v for v in strings("env_vars") if v not in MODEL_KEYS)
    env = {n: environ[n] for n in env_vars if n in environ} | env
    spec = ServerSpec(
        name=name, source=source, project=project, named=named, command=command, args=strings("args"), env=env,
        cwd=expand(entry["cwd"], "cwd") if entry.get("cwd") is not None else None, url=url, headers=headers,
        startup_timeout=_seconds(entry, where, "startup_timeout", _env_ms(environ, "MCP_TIMEOUT",
                                                                             DEFAULT_STARTUP_TIMEOUT)),
        tool_timeout=_seconds(entry, where, "tool_timeout", _env_ms(environ, "MCP_TOOL_TIMEOUT",
                                                                    DEFAULT_TOOL_TIMEOUT)),
        tool_timeout_max=_seconds(entry, where, "tool_timeout_max", DEFAULT_TOOL_TIMEOUT_MAX),
        enabled=_flag(entry, where, "enabled", True), required=_flag(entry, where, "required", False),
        trusted=_flag(entry, where, "trusted", False),
        enabled_tools=frozenset(strings("enabled_tools")) if "enabled_tools" in entry else None,
        disabled_tools=frozenset(strings("disabled_tools")),
    )
    if spec.trusted and project:
        warnings.append(f"{where}: trusted = true ignored: only the person's own settings may trust a server")
        spec = replace(spec, trusted=False)
    if missing:
        spec = replace(spec, problem=f"needs ${', $'.join(dict.fromkeys(missing))}, which is not set")
    if api_key and api_key in json.dumps([command, spec.args, spec.env, url, headers, spec.cwd]):
        raise ConfigError(f"{where}: its definition would carry the model's API key; a server never gets it")
    return spec


def _seconds(entry: dict[str, Any], where: str, key: str, default: float) -> float:
    """``key``, ``key_sec`` (Codex) or ``key_ms``, in seconds."""
    for name, scale in ((key, 1.0), (f"{key}_sec", 1.0), (f"{key}_ms", 0.001)):
        if name in entry:
            value = entry[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value * scale <= 86400:
                raise ConfigError(f"{where}: {name} must be a number of {'milli' * (scale < 1)}seconds, "
                                  "above 0 and at most a day")
            return float(value) * scale
    return default


def _env_ms(environ: Mapping[str, str], variable: str, default: float) -> float:
    """Claude Code's MCP_TIMEOUT / MCP_TOOL_TIMEOUT, in milliseconds; a bad value keeps the default."""
    try:
        value = float(environ.get(variable, "")) / 1000
    except ValueError:
        return default
    return value if 0 < value <= 86400 else default


def _flag(entry: dict[str, Any], where: str, key: str, default: bool) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false")
    return value
