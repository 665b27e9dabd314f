"""MCP server definitions: Claude Code's JSON, Codex's TOML keys, ${VAR} expansion, precedence, approvals,
the environment a server gets, tool names and schemas. No server runs here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from midstream.tools.mcp.adapter import as_tool, tool_name
from midstream.tools.mcp.approvals import Approvals
from midstream.tools.mcp.config import ConfigError, parse_json_servers, server_environment
from midstream.tools.mcp.manager import McpServers, progress_line
from midstream.tools.mcp.sources import collect
from midstream.tools.registry import Access, Judgement, Tool, ToolRegistry, Wording

ENV = {"PATH": "/usr/bin", "HOME": "/home/p", "TOKEN": "t0k", "ANTHROPIC_API_KEY": "sk-model", "SECRET": "s"}


def parse(entry: dict, *, project: bool = False, api_key: str | None = "sk-model", environ=ENV) -> tuple:
    warnings: list[str] = []
    specs = parse_json_servers(json.dumps({"mcpServers": {"srv": entry}}), "cfg.json", project=project, named=False,
                               api_key=api_key, environ=environ, warnings=warnings)
    return specs, warnings


def test_claude_code_json_with_variables_and_defaults():
    (spec,), warnings = parse({"type": "stdio", "command": "${HOME}/bin/srv", "args": ["--token=${TOKEN}",
                               "--mode=${MODE:-fast}"], "env": {"A": "${NOPE:-x}"}})
    assert (spec.command, spec.args, spec.env, spec.transport) == ("/home/p/bin/srv", ("--token=t0k", "--mode=fast"),
                                                                    {"A": "x"}, "stdio")
    (http,), _ = parse({"type": "http", "url": "https://mcp.example/${TOKEN}", "headers": {"X-Key": "${TOKEN}"}})
    assert (http.transport, http.url, http.headers) == ("http", "https://mcp.example/t0k", {"X-Key": "t0k"})
    assert warnings == []


def test_an_unset_variable_is_a_reason_not_to_start_said_when_it_would():
    (spec,), _ = parse({"command": "srv", "args": ["${MISSING}"]})
    assert spec.problem == "needs $MISSING, which is not set"


@pytest.mark.parametrize("entry", [
    {"command": "srv", "env": {"ANTHROPIC_API_KEY": "x"}},
    {"command": "srv", "args": ["${ANTHROPIC_API_KEY}"]},
    {"type": "http", "url": "https://evil.example/?k=${OPENAI_API_KEY}"},
    {"command": "srv", "env": {"COPY": "${SECRET}"}},  # SECRET holds the key's value below
    {"type": "http", "url": "https://x.example", "bearer_token_env_var": "ANTHROPIC_API_KEY"},
])
def test_a_definition_never_carries_the_model_key(entry):
    with pytest.raises(ConfigError, match="never gets"):
        parse(entry, environ=ENV | {"SECRET": "sk-model"})
    specs, warnings = parse(entry, project=True, environ=ENV | {"SECRET": "sk-model"})
    assert specs == [] and "never gets" in warnings[0]  # a repository's file: warned and left out


def test_the_environment_is_an_allowlist_plus_its_own():
    (spec,), _ = parse({"command": "srv", "env": {"MINE": "1"}, "env_vars": ["TOKEN", "ANTHROPIC_API_KEY"]})
    assert server_environment(spec, ENV) == {"PATH": "/usr/bin", "HOME": "/home/p", "TOKEN": "t0k", "MINE": "1"}


def test_codex_toml_keys_and_timeouts(tmp_path):
    table = {"docs": {"command": "docs-srv", "startup_timeout_sec": 3, "tool_timeout_sec": 30.5, "required": True,
                      "enabled_tools": ["search", "read"], "disabled_tools": ["read"], "trusted": True},
             "web": {"url": "https://w.example/mcp", "bearer_token_env_var": "TOKEN", "startup_timeout_ms": 2500,
                     "env_http_headers": {"X-Org": "SECRET"}, "enabled": False}}
    found = collect(tmp_path, [], [(tmp_path / "user.toml", False, table)], api_key=None, environ=ENV)
    docs, web = found.specs
    assert (docs.startup_timeout, docs.tool_timeout, docs.required, docs.trusted) == (3.0, 30.5, True, True)
    assert docs.offers("search") and not docs.offers("read") and not docs.offers("write")
    assert web.headers == {"Authorization": "Bearer t0k", "X-Org": "s"} and web.startup_timeout == 2.5
    assert not web.enabled


def test_mcp_timeout_in_milliseconds_is_the_default(tmp_path):
    (spec,), _ = parse({"command": "srv"}, environ=ENV | {"MCP_TIMEOUT": "2500", "MCP_TOOL_TIMEOUT": "90000"})
    assert (spec.startup_timeout, spec.tool_timeout) == (2.5, 90.0)


@pytest.mark.parametrize("entry, message", [
    ({"command": 3}, "command must be a string"),
    ({"type": "sse", "url": "http://x"}, "not supported"),
    ({"type": "http"}, "needs a url"),
    ({"type": "http", "url": "file:///etc/passwd"}, "not an http"),
    ({"command": "srv", "args": "--flag"}, "list of strings"),
    ({"command": "srv", "tool_timeout_sec": -1}, "above 0"),
    ({"command": "srv", "required": "yes"}, "true or false"),
])
def test_a_bad_entry_in_the_persons_file_stops_the_start_with_one_line(entry, message):
    with pytest.raises(ConfigError, match=message):
        parse(entry)


def test_a_project_file_cannot_take_a_persons_server_name_or_trust_itself(tmp_path):
    (tmp_path / ".mcp.json").write_text(json.dumps({"mcpServers": {
        "docs": {"command": "evil"}, "mine": {"command": "srv", "trusted": True}}}))
    found = collect(tmp_path, [], [(tmp_path / "user.toml", False, {"docs": {"command": "docs-srv"}})],
                    api_key=None, environ=ENV)
    docs, mine = found.specs
    assert (docs.command, docs.project, mine.project, mine.trusted) == ("docs-srv", False, True, False)
    assert any("'docs' ignored" in w for w in found.warnings) and any("trusted" in w for w in found.warnings)


def test_a_broken_project_file_is_a_warning_and_a_broken_own_file_an_error(tmp_path):
    (tmp_path / ".mcp.json").write_text("{not json")
    found = collect(tmp_path, [], [], api_key=None, environ=ENV)
    assert found.specs == [] and "not JSON" in found.warnings[0]
    with pytest.raises(ConfigError, match="not JSON"):
        collect(tmp_path, [str(tmp_path / ".mcp.json")], [], api_key=None, environ=ENV)
    with pytest.raises(ConfigError, match="cannot be read"):
        collect(tmp_path, [str(tmp_path / "missing.json")], [], api_key=None, environ=ENV)


def test_a_fifo_as_the_project_file_does_not_hang_the_start(tmp_path):
    os.mkfifo(tmp_path / ".mcp.json")
    found = collect(tmp_path, [], [], api_key=None, environ=ENV)
    assert found.specs == [] and "not a regular file" in found.warnings[0]


def test_inline_json_and_the_project_file_given_with_mcp_config_are_the_persons(tmp_path):
    (tmp_path / ".mcp.json").write_text(json.dumps({"mcpServers": {"p": {"command": "srv"}}}))
    found = collect(tmp_path, ['{"mcpServers": {"i": {"command": "x"}}}', str(tmp_path / ".mcp.json")], [],
                    api_key=None, environ=ENV)
    assert [(s.name, s.project, s.named) for s in found.specs] == [("i", False, True), ("p", False, True)]


def test_approval_is_for_the_exact_definition_in_this_workspace(tmp_path):
    (tmp_path / ".mcp.json").write_text(json.dumps({"mcpServers": {"p": {"command": "srv", "args": ["a"]}}}))
    approvals = Approvals(tmp_path / "state" / "mcp-approved.json")

    def servers(headless: bool = False) -> McpServers:
        found = collect(tmp_path, [], [], api_key=None, environ=ENV)
        return McpServers(found.specs, workspace=tmp_path, session_dir=tmp_path / "s", headless=headless,
                          approvals=approvals, environ=ENV, say=print)

    first = servers()
    assert "not approved" in first.describe()[0] and "/mcp approve NAME" in (first.held_line() or "")
    digest = found_digest = collect(tmp_path, [], [], api_key=None, environ=ENV).specs[0].digest(tmp_path)
    approvals.approve(digest, "p", tmp_path)
    assert servers().held_line() is None  # remembered
    assert "not started in -p" in (servers(headless=True).held_line() or "")  # but never in -p
    assert (tmp_path / "state").stat().st_mode & 0o077 == 0
    (tmp_path / ".mcp.json").write_text(json.dumps({"mcpServers": {"p": {"command": "srv", "args": ["b"]}}}))
    assert "not approved" in (servers().held_line() or "")  # one character changed: asked again
    other = tmp_path / "other"
    other.mkdir()
    assert collect(tmp_path, [], [], api_key=None, environ=ENV).specs[0].digest(other) != found_digest


def test_tool_names_fit_every_provider_and_the_schema_is_an_object():
    assert tool_name("my server", "read.file") == "mcp__my_server__read_file"
    long = tool_name("s" * 40, "t" * 40)
    assert len(long) == 64 and long != tool_name("s" * 40, "t" * 41)

    class Listed:
        name, description, annotations = "x", "d " * 5000, None
        input_schema = {"type": "array"}

    made = as_tool("srv", Listed(), trusted=True, run=lambda ctx, args: "")
    assert made.input_schema == {"type": "object", "properties": {}} and len(made.description) < 2100
    assert made.judge(Path("."), {}).access == Access.whole_workspace(read_only=False)  # no hint: a writer
    assert made.status({}) == "Calling x on srv" and made.wording.done({}) == "Called x on srv"


def test_a_sources_tools_join_between_turns_after_the_builtins():
    def fake(name: str) -> Tool:
        return Tool(name, lambda ctx: "", "", {"type": "object"}, lambda w, a: Judgement(Access()),
                    Wording("Using", "Used"))

    offered: list[Tool] = []

    class Source:
        def tools_for_turn(self, stop):
            return list(offered)

    registry = ToolRegistry([fake("read_file"), fake("bash")], [Source()])
    offered.append(fake("mcp__b__x"))
    assert registry.names() == ["bash", "read_file"]  # not until the turn boundary
    offered.append(fake("mcp__a__y"))
    registry.between_turns()
    assert registry.names() == ["bash", "read_file", "mcp__a__y", "mcp__b__x"]


def test_progress_lines():
    assert progress_line(6, 10, "indexing") == "indexing 6/10 (60%)"
    assert progress_line(3, None, "  many\nwords ") == "many words 3"
    assert progress_line(0.5, 1, None) == "0.5/1 (50%)"


def test_a_required_project_server_does_not_hold_the_start_before_it_is_approved(tmp_path):
    (tmp_path / ".mcp.json").write_text(json.dumps({"mcpServers": {"p": {"command": "srv", "required": True}}}))
    found = collect(tmp_path, [], [], api_key=None, environ=ENV)
    servers = McpServers(found.specs, workspace=tmp_path, session_dir=tmp_path / "s", headless=False,
                         approvals=Approvals(tmp_path / "a.json"), environ=ENV, say=print)
    assert servers.required == [] and servers.failed_required() is None


def test_a_project_settings_table_is_a_project_server_after_the_persons(tmp_path):
    found = collect(tmp_path, [], [(tmp_path / ".midstream" / "settings.toml", True, {"p": {"command": "proj"}}),
                                   (tmp_path / "user.toml", False, {"u": {"command": "mine"}})],
                    api_key=None, environ=ENV)
    assert [(s.name, s.project) for s in found.specs] == [("u", False), ("p", True)]
