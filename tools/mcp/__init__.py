"""Model Context Protocol servers' tools as midstream tools (the official SDK, PyPI ``mcp`` 2.x, on httpx2).

- ``config.py``     one server's definition: Claude Code's JSON, Codex's TOML keys, ${VAR} expansion
- ``sources.py``    where definitions come from (--mcp-config, settings.toml, .mcp.json), which one wins
- ``approvals.py``  project servers the person approved, by a hash of the exact definition
- ``runtime.py``    the one event-loop thread that owns every server; calls, progress, cancellation
- ``adapter.py``    an MCP tool as a Tool: ``mcp__<server>__<tool>``, its schema, how it is ordered
- ``output.py``     a result as text that fits: marked as the server's, big or binary parts to files
- ``results.py``    read_mcp_result: the one tool that reads a too-big result where it was kept
- ``manager.py``    the session's servers: started in the background, joined between turns, /mcp

Nothing here imports the SDK until a server starts, and then on another thread: the prompt never
waits for it. Resources, prompts, sampling, elicitation and OAuth are not supported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from midstream.tools.mcp.approvals import Approvals
from midstream.tools.mcp.config import ConfigError
from midstream.tools.mcp.manager import McpServers
from midstream.tools.mcp.sources import collect

__all__ = ["ConfigError", "McpServers", "open_servers"]


def open_servers(workspace: Path, *, mcp_configs: Sequence[str], tables: Sequence[tuple[Path, bool, Any]],
                 api_key: str | None, headless: bool, session_dir: Path, state_dir: Path,
                 environ: Mapping[str, str], say: Callable[[str], None]) -> McpServers | None:
    """The session's servers, not yet started (None when none is defined); ConfigError for a bad file."""
    found = collect(workspace, mcp_configs, tables, api_key=api_key, environ=environ)
    for warning in found.warnings:
        say(warning)
    if not found.specs:
        return None
    return McpServers(found.specs, workspace=workspace, session_dir=session_dir, headless=headless,
                      approvals=Approvals(state_dir / "approvals.json"), environ=environ, say=say)
