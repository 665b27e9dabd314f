"""The [[hooks.EVENT]] tables of settings.toml, and Claude Code's matcher rule (tools/hooks/config.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from midstream.tools.hooks.config import HookConfigError, hook_names, matches, parse_hooks

SETTINGS = '''\
model = "x"

[[hooks.PreToolUse]]
matcher = "Bash"
hooks = [{ type = "command", command = "./check.sh", timeout = 30, fail_closed = true }]

[[hooks.PreToolUse]]
matcher = "Edit|Write"
hooks = [{ type = "command", command = "fmt" }, { type = "prompt", prompt = "is it ok?" }]

[[hooks.Notification]]
hooks = [{ type = "command", command = "notify-send hi" }]

[[hooks.Stop]]
matcher = "ignored"
hooks = [{ type = "command", command = "echo done", statusMessage = "Checking" }]
'''


def _parse(text: str, project: bool = False) -> tuple[list, list[str]]:
    warnings: list[str] = []
    return parse_hooks(tomllib.loads(text)["hooks"], Path("/p/settings.toml"), text, project=project,
                       warnings=warnings), warnings


def test_a_settings_file_gives_typed_commands_with_where_they_came_from():
    hooks, warnings = _parse(SETTINGS, project=True)
    assert [(h.event, h.matcher, h.command, h.timeout, h.fail_closed, h.project) for h in hooks] == [
        ("PreToolUse", "Bash", "./check.sh", 30.0, True, True),
        ("PreToolUse", "Edit|Write", "fmt", 60.0, False, True),
        ("Stop", "", "echo done", 60.0, False, True),
    ]
    assert hooks[0].where == "/p/settings.toml:3" and hooks[1].where == "/p/settings.toml:7"
    assert hooks[2].status == "Checking"
    # Claude Code's events and hook types that midstream has not: said, not silently dropped, not fatal.
    assert any("Notification" in w and "ignored" in w for w in warnings)
    assert any("'prompt'" in w for w in warnings)
    assert any("no matcher" in w for w in warnings)


@pytest.mark.parametrize(("text", "says"), [
    ('[[hooks.PreToolUs]]\nhooks = [{type="command", command="x"}]', "unknown hook event 'PreToolUs'"),
    ('[[hooks.PreToolUse]]\nmatcher = "("\nhooks = [{type="command", command="x"}]', "not a regular expression"),
    ('[[hooks.PreToolUse]]\nhooks = [{type="command"}]', "needs `command"),
    ('[[hooks.PreToolUse]]\nhooks = [{type="command", command="  "}]', "needs `command"),
    ('[[hooks.PreToolUse]]\nhooks = [{type="command", command="x", timeout=-1}]', "timeout must be"),
    ('[[hooks.PreToolUse]]\nhooks = [{type="command", command="x", timeout=true}]', "timeout must be"),
    ('[[hooks.PreToolUse]]\nhooks = [{type="command", command="x", fail_closed="yes"}]', "fail_closed"),
    ('[[hooks.PreToolUse]]\nhooks = []', "needs `hooks"),
    ('[[hooks.PreToolUse]]\nmatch = "Bash"\nhooks = [{type="command", command="x"}]', "unknown key 'match'"),
    ('hooks = "no"', "must be a table"),
    ('[hooks]\nPreToolUse = "x"', "must be a list"),
])
def test_malformed_hooks_are_one_error_naming_the_file(text: str, says: str):
    with pytest.raises(HookConfigError, match=None) as raised:
        _parse(text)
    assert says in str(raised.value) and str(raised.value).startswith("/p/settings.toml")


@pytest.mark.parametrize(("matcher", "tool", "fires"), [
    ("Bash", "bash", True), ("bash", "bash", True), ("Bash", "read_file", False), ("BASH", "bash", False),
    ("", "grep", True), ("*", "grep", True), ("Edit|Write", "write_file", True), ("Edit|Write", "edit_file", True),
    ("Edit|Write", "read_file", False), ("MultiEdit", "edit_file", True), ("Read", "read_file", True),
    ("Glob", "glob", True), ("Grep", "grep", True), ("LS", "list_dir", True),
    ("mcp__.*", "mcp__files__read", True), ("mcp__memory__.*", "mcp__files__read", False),
    ("mcp__*", "mcp__git__status", True), ("Notebook.*", "bash", False), ("^(bash|Bash)$", "bash", True),
])
def test_claude_codes_matcher_rule_over_both_names(matcher: str, tool: str, fires: bool):
    assert matches(matcher, hook_names(tool)) is fires


@pytest.mark.parametrize(("command", "problem"), [
    ("./missing.sh", "./missing.sh: no such file"), ("./plain.txt --x", "not executable"),
    ("no-such-program-anywhere arg", "not found on PATH"), ("./ok.sh", None), ("ls -la", None),
    ('"$CLAUDE_PROJECT_DIR"/hooks/x.sh', None), ("FOO=1 ./ok.sh", None), ("exit 2", None), ("echo 'x", "not valid"),
])
def test_an_unlaunchable_command_is_found_before_it_runs(tmp_path: Path, command: str, problem: str | None):
    from midstream.tools.hooks.config import HookCommand, launch_problem

    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "ok.sh").write_text("#!/bin/sh\n")
    (tmp_path / "ok.sh").chmod(0o755)
    found = launch_problem(HookCommand("PreToolUse", "", command), tmp_path, path="/usr/bin:/bin")
    assert (found is None) if problem is None else (found is not None and problem in found)
