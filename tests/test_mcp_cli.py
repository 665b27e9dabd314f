"""MCP from the command line: -p and project files, stream-json, and a person at a pty (pyte) who watches
progress, presses Ctrl-C during a slow call, and approves a project server with /mcp."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import Terminal, program_env, wait_until
from tests.mcp_helpers import SERVER, calls, server_processes

pytestmark = pytest.mark.process


def config(log: Path, *extra: str) -> dict:
    return {"mcpServers": {"t": {"command": SERVER[0], "args": [*SERVER[1:], "--log", str(log), *extra]}}}


def run(workspace: Path, server: ScriptedServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = program_env(ANTHROPIC_BASE_URL=server.url)
    return subprocess.run([sys.executable, "-m", "midstream", "--isolation", "none", "--mode", "auto", *args],
                          cwd=workspace, env=env, capture_output=True, text=True, timeout=120)


def tool_names(request: dict) -> list[str]:
    return [t["name"] for t in request["body"]["tools"]]


def test_a_project_mcp_json_does_not_start_in_p_unless_given_with_mcp_config(workspace, tmp_path):
    log = tmp_path / "server.log"
    (workspace / ".mcp.json").write_text(json.dumps(config(log)))
    server = ScriptedServer([reply(Text("no tools")), reply(ToolUse("t1", "mcp__t__echo", {"text": "hi"})),
                             reply(Text("done"))])
    with server:
        skipped = run(workspace, server, "-p", "go")
        called_before = calls(log)
        given = run(workspace, server, "-p", "go", "--mcp-config", ".mcp.json")
    assert skipped.returncode == 0, skipped.stderr
    (line,) = [line for line in skipped.stderr.splitlines() if "MCP" in line]
    assert line == ("midstream: MCP: project server t not started in -p (only servers given with --mcp-config "
                    "start without the person)")
    assert not [n for n in tool_names(server.requests[0]) if n.startswith("mcp__")] and called_before == []
    assert given.returncode == 0, given.stderr
    assert "mcp__t__echo" in tool_names(server.requests[1]) and calls(log) == ["call echo"]


def test_progress_reaches_stream_json(workspace, tmp_path):
    log = tmp_path / "server.log"
    (tmp_path / "cfg.json").write_text(json.dumps(config(log, "--step", "0.05")))
    server = ScriptedServer([reply(ToolUse("t1", "mcp__t__slow", {"n": 3})), reply(Text("done"))])
    with server:
        done = run(workspace, server, "-p", "go", "--output-format", "stream-json", "--mcp-config",
                   str(tmp_path / "cfg.json"))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    progress = [r["line"] for r in records if r["event"] == "ToolProgress"]
    assert progress == ["indexing 1/3 (33%)", "indexing 2/3 (67%)", "indexing 3/3 (100%)"]


def test_a_required_server_that_fails_stops_the_start_with_one_line(workspace, tmp_path):
    settings = tmp_path / "home" / ".config" / "midstream"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[mcp_servers.needed]\ncommand = "/nonexistent/server"\nrequired = true\n')
    server = ScriptedServer([reply(Text("never"))])
    with server:
        env = program_env(ANTHROPIC_BASE_URL=server.url, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
        (tmp_path / "xdg" / "midstream").mkdir(parents=True)
        (tmp_path / "xdg" / "midstream" / "settings.toml").write_text(cfg.read_text())
        done = subprocess.run([sys.executable, "-m", "midstream", "--isolation", "none", "-p", "go"], cwd=workspace,
                              env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and server.requests == [] and not settings.exists()
    assert done.stderr.strip().splitlines() == [
        "midstream: MCP server 'needed' is required but No such file or directory: /nonexistent/server"]


def test_ctrl_c_during_a_slow_call_cancels_it_on_the_server_which_answers_the_next(workspace, tmp_path):
    log = tmp_path / "server.log"
    (tmp_path / "cfg.json").write_text(json.dumps(config(log)))
    server = ScriptedServer([reply(Text("Indexing.\n"), ToolUse("t1", "mcp__t__slow", {"n": 500})),
                             reply(ToolUse("t2", "mcp__t__echo", {"text": "alive"})), reply(Text("all done"))])
    with server:
        term = Terminal(server, workspace, 120, "--mcp-config", str(tmp_path / "cfg.json"))
        term.expect("› ")
        term.child.sendline("index it")
        term.expect(r"indexing \d+/500 \(\d+%\)")
        assert any("Calling slow on t" in row and "indexing" in row for row in term.lines())  # the status line
        term.child.sendintr()
        assert wait_until(lambda: "cancelled slow" in calls(log), 1.0), calls(log)  # the server saw it at once
        term.expect("cancelled on server t after")
        term.expect("› ")
        assert server_processes(log)  # Ctrl-C never reached the server's process
        term.child.sendline("go on")
        term.expect("all done")
        term.expect("› ")
        term.child.sendeof()
        term.finish()
    assert calls(log) == ["call slow", "cancelled slow", "call echo"]


def test_a_project_server_starts_once_the_person_approves_it(workspace, tmp_path):
    log = tmp_path / "server.log"
    (workspace / ".mcp.json").write_text(json.dumps(config(log)))
    server = ScriptedServer([reply(ToolUse("t1", "mcp__t__echo", {"text": "approved"})), reply(Text("done"))])
    with server:
        term = Terminal(server, workspace, 120)
        term.expect("not approved yet")
        term.expect("› ")
        term.child.sendline("/mcp")
        term.expect("t · not approved: /mcp approve t starts it")
        assert calls(log) == [] and not server_processes(log)
        term.child.sendline("/mcp approve t")
        term.expect("approved t")
        term.expect("› ")
        term.child.sendline("use it")
        term.expect("done")
        term.expect("› ")
        term.child.sendeof()
        term.finish()
        again = Terminal(server, workspace, 120)  # remembered: no question the second time
        again.expect("› ")
        again.child.sendeof()
        again.finish()
    assert "mcp__t__echo" in tool_names(server.requests[0]) and calls(log) == ["call echo"]
    assert b"not approved" not in again.bytes.getvalue()


def test_a_server_slow_to_initialize_does_not_delay_the_prompt_and_a_dead_one_is_one_line(workspace, tmp_path):
    log = tmp_path / "server.log"
    servers = config(log, "--sleep-before-start", "60")
    servers["mcpServers"]["t"]["startup_timeout_sec"] = 2
    servers["mcpServers"]["dead"] = {"command": sys.executable, "args": ["-c", "raise SystemExit('no config')"]}
    (tmp_path / "cfg.json").write_text(json.dumps(servers))
    server = ScriptedServer([reply(Text("hello there"))])
    with server:
        term = Terminal(server, workspace, 120, "--mcp-config", str(tmp_path / "cfg.json"))
        term.expect("› ")  # the server sleeps 60 s before it would answer initialize
        term.child.sendline("hi")
        term.expect("hello there")
        term.expect("› ")
        term.child.sendeof()
        term.finish()
    rows = term.lines()
    mcp_rows = [row for row in rows if "MCP server" in row]
    assert mcp_rows == ["midstream: MCP server 't' failed: did not start within 2 s", "midstream: MCP server 'dead' "
                        "failed: it closed the connection while starting (stderr: no config)"], rows
    assert not [t for t in server.requests[0]["body"]["tools"] if t["name"].startswith("mcp__")]
