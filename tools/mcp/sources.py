"""Where server definitions come from, and which one wins when two share a name.

In order: each ``--mcp-config`` (a file, or inline JSON as Claude Code allows), the user's
settings.toml, then the project's ``.midstream/settings.toml`` and ``.mcp.json``. The first
definition of a name wins, so a repository can never replace a server the person defined.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midstream.tools.mcp.config import ConfigError, ServerSpec, parse_json_servers, parse_table_servers, read_text

__all__ = ["Collected", "collect"]

PROJECT_FILE = ".mcp.json"


@dataclass
class Collected:
    specs: list[ServerSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def collect(workspace: Path, mcp_configs: Sequence[str], tables: Sequence[tuple[Path, bool, Any]], *,
            api_key: str | None, environ: Mapping[str, str]) -> Collected:
    """Every definition in force; a bad file of the person's raises ConfigError, a project's warns."""
    found = Collected()
    given: set[Path] = set()
    for config in mcp_configs:
        if config.lstrip().startswith("{"):
            text, source = config, "--mcp-config"
        else:
            path = Path(config).expanduser()
            try:
                text = read_text(path)
            except (OSError, UnicodeDecodeError) as error:
                why = getattr(error, "strerror", None) or error
                raise ConfigError(f"--mcp-config {config}: cannot be read ({why})") from None
            given.add(path.resolve())
            source = str(path)
        _add(found, parse_json_servers(text, source, project=False, named=True, api_key=api_key, environ=environ,
                                       warnings=found.warnings))
    for path, project, table in sorted(tables, key=lambda t: t[1]):  # the user's file before the project's
        _add(found, parse_table_servers(table, str(path), project=project, api_key=api_key, environ=environ,
                                        warnings=found.warnings))
    project_file = workspace / PROJECT_FILE
    if project_file.resolve() not in given:
        project_text: str | None
        try:
            project_text = read_text(project_file)
        except FileNotFoundError:
            project_text = None
        except (OSError, UnicodeDecodeError, ConfigError) as error:
            found.warnings.append(f"{project_file}: cannot be read ({error}); its MCP servers are ignored")
            project_text = None
        if project_text is not None:
            _add(found, parse_json_servers(project_text, str(project_file), project=True, named=False, api_key=api_key,
                                           environ=environ, warnings=found.warnings))
    return found


def _add(found: Collected, specs: list[ServerSpec]) -> None:
    known = {spec.name: spec for spec in found.specs}
    for spec in specs:
        if (first := known.get(spec.name)) is not None:
            found.warnings.append(f"{spec.source}: MCP server {spec.name!r} ignored: {first.source} defines it first")
            continue
        known[spec.name] = spec
        found.specs.append(spec)
