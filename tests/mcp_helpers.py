"""For the MCP tests: the SDK-written test server (tools/testing/mcp_server.py) over stdio or HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from midstream.tools.mcp.approvals import Approvals
from midstream.tools.mcp.config import ServerSpec
from midstream.tools.mcp.manager import McpServers

SERVER = [sys.executable, "-m", "midstream.tools.testing.mcp_server"]


def stdio_spec(log: Path, *extra: str, name: str = "t", **fields: Any) -> ServerSpec:
    return ServerSpec(name=name, source="test", project=False, command=SERVER[0],
                      args=(*SERVER[1:], "--log", str(log), *extra), **fields)


def calls(log: Path) -> list[str]:
    """``call echo``, ``cancelled slow`` …: what the server received, in order, without the times."""
    if not log.exists():
        return []
    return [" ".join(line.split()[:2]) for line in log.read_text().splitlines()]


def server_processes(log: Path) -> list[int]:
    """Pids of test servers started with this log (their command lines name it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"midstream.tools.testing.mcp_server" in argv and str(log).encode() in argv:
            found.append(int(pid))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def http_server(log: Path, *extra: str) -> Iterator[str]:
    """The test server under uvicorn on 127.0.0.1; yields its MCP endpoint's URL."""
    port = free_port()
    process = subprocess.Popen([*SERVER, "--log", str(log), "--transport", "http", "--port", str(port), *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def spec_for(transport: str, log: Path, *extra: str, **fields: Any) -> Iterator[ServerSpec]:
    """The test server as a stdio subprocess or over Streamable HTTP, as one ServerSpec."""
    if transport == "stdio":
        yield stdio_spec(log, *extra, **fields)
        return
    with http_server(log, *extra) as url:
        yield replace(stdio_spec(log, **fields), command=None, args=(), url=url)


def started(specs: list[ServerSpec], tmp_path: Path, said: list[str], *, headless: bool = True,
            workspace: Path | None = None) -> McpServers:
    servers = McpServers(specs, workspace=workspace or tmp_path, session_dir=tmp_path / "session", headless=headless,
                         approvals=Approvals(tmp_path / "state" / "mcp-approved.json"), environ=dict(os.environ),
                         say=said.append)
    servers.start()
    return servers
