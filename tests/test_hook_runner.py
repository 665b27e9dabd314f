"""Real hook scripts, run by the hooks runner and read by Claude Code's rules (tools/hooks/)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from midstream.sandbox.isolation import bwrap_works
from midstream.tools.hooks.config import HookCommand
from midstream.tools.hooks.policy import Hooks

pytestmark = pytest.mark.process


def _script(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text(body)
    path.chmod(0o755)
    return f"./{name}"


def _hooks(ws: Path, *commands: HookCommand, **kwargs) -> Hooks:
    return Hooks(list(commands), ws, session_id="s-1", transcript_path="/t/s-1.jsonl", **kwargs)


def test_exit_2_blocks_the_call_and_its_stderr_is_the_reason(workspace: Path):
    command = _script(workspace, "check.sh", "#!/bin/bash\ncat >/dev/null\necho 'no git push here' >&2\nexit 2\n")
    verdict = _hooks(workspace, HookCommand("PreToolUse", "Bash", command)).pre_tool_use(
        "bash", {"command": "git push"}, "t1")
    assert verdict.block == "no git push here"
    assert [run.exit_code for run in verdict.runs] == [2]


def test_the_hook_gets_claude_codes_fields_on_stdin_and_an_allowlisted_environment(
        workspace: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    command = _script(workspace, "log.py", "#!/usr/bin/env python3\nimport json, os, sys\n"
                      "data = json.load(sys.stdin)\ndata['env'] = dict(os.environ)\n"
                      "open('seen.json', 'w').write(json.dumps(data))\n")
    hooks = _hooks(workspace, HookCommand("PostToolUse", "Write", command), mode="ask")
    verdict = hooks.post_tool_use("write_file", {"path": "src/a.py", "content": "x"},
                                  {"content": "wrote 1 line", "is_error": False}, "toolu_1")
    assert verdict.block is None and verdict.notices == ()
    seen = json.loads((workspace / "seen.json").read_text())
    assert {k: seen[k] for k in ("session_id", "transcript_path", "cwd", "hook_event_name", "tool_name",
                                 "midstream_tool_name", "tool_use_id", "permission_mode")} == {
        "session_id": "s-1", "transcript_path": "/t/s-1.jsonl", "cwd": str(workspace),
        "hook_event_name": "PostToolUse", "tool_name": "Write", "midstream_tool_name": "write_file",
        "tool_use_id": "toolu_1", "permission_mode": "ask"}
    assert seen["tool_input"] == {"path": "src/a.py", "content": "x", "file_path": str(workspace / "src/a.py")}
    assert seen["tool_response"] == {"content": "wrote 1 line", "is_error": False}
    assert "ANTHROPIC_API_KEY" not in seen["env"] and "OPENAI_API_KEY" not in seen["env"]
    assert seen["env"]["CLAUDE_PROJECT_DIR"] == str(workspace) == seen["env"]["MIDSTREAM_PROJECT_DIR"]


@pytest.mark.parametrize(("answer", "permission", "blocked"), [
    ({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                             "permissionDecisionReason": "migrations are frozen"}}, "deny", "migrations are frozen"),
    ({"hookSpecificOutput": {"permissionDecision": "ask", "permissionDecisionReason": "sure?"}}, "ask", None),
    ({"hookSpecificOutput": {"permissionDecision": "allow"}}, "allow", None),
    ({"decision": "block", "reason": "old form"}, "deny", "old form"),
    ({"decision": "approve"}, "allow", None),
])
def test_json_answers_decide_the_call(workspace: Path, answer: dict, permission: str, blocked: str | None):
    (workspace / "answer.json").write_text(json.dumps(answer))
    verdict = _hooks(workspace, HookCommand("PreToolUse", "", "cat answer.json")).pre_tool_use(
        "write_file", {"path": "db/migrations/1.sql", "content": ""}, "t1")
    assert (verdict.permission, verdict.block) == (permission, blocked)


def test_deny_wins_over_ask_and_allow_and_hooks_run_side_by_side(workspace: Path):
    # Each hook waits until the other has started: only hooks running in parallel can both finish.
    a = _script(workspace, "a.sh", "#!/bin/bash\ntouch a.started\nfor i in $(seq 100); do [ -e b.started ] && break;"
                " sleep 0.05; done\n[ -e b.started ] || exit 1\n"
                "echo '{\"hookSpecificOutput\": {\"permissionDecision\": \"allow\"}}'\n")
    b = _script(workspace, "b.sh", "#!/bin/bash\ntouch b.started\nfor i in $(seq 100); do [ -e a.started ] && break;"
                " sleep 0.05; done\n[ -e a.started ] || exit 1\n"
                "echo '{\"hookSpecificOutput\": {\"permissionDecision\": \"deny\", "
                "\"permissionDecisionReason\": \"b says no\"}}'\n")
    verdict = _hooks(workspace, HookCommand("PreToolUse", "Bash", a), HookCommand("PreToolUse", "bash", b),
                     HookCommand("PreToolUse", "Bash", a)).pre_tool_use("bash", {"command": "ls"}, "t1")
    assert len(verdict.runs) == 2  # the identical command ran once
    assert verdict.notices == ()
    assert (verdict.permission, verdict.reason, verdict.block) == ("deny", "b says no", "b says no")


def test_a_failing_hook_is_shown_and_passes_unless_it_is_fail_closed(workspace: Path):
    command = _script(workspace, "broken.sh", "#!/bin/bash\necho 'jq: error: syntax' >&2\nexit 1\n")
    verdict = _hooks(workspace, HookCommand("PreToolUse", "", command)).pre_tool_use("bash", {"command": "ls"}, "t")
    assert verdict.block is None
    assert verdict.notices == ("PreToolUse hook `./broken.sh` failed with exit status 1: jq: error: syntax",)
    closed = _hooks(workspace, HookCommand("PreToolUse", "", command, fail_closed=True)).pre_tool_use(
        "bash", {"command": "ls"}, "t")
    assert closed.block is not None and "fail_closed" in closed.block and "exit status 1" in closed.block


@pytest.mark.parametrize("command", ["./missing.sh", "not-a-command-anywhere --flag", "./not-executable.sh"])
def test_a_hook_that_cannot_start_is_a_configuration_error_not_an_answer(workspace: Path, command: str):
    (workspace / "not-executable.sh").write_text("#!/bin/bash\nexit 2\n")  # exit 2 would block, if it ran
    hook = HookCommand("PreToolUse", "", command, where="/ws/.midstream/settings.toml:3")
    verdict = _hooks(workspace, hook).pre_tool_use("bash", {"command": "ls"}, "t")
    assert [run.ended for run in verdict.runs] == ["not_started"]
    assert verdict.block is None  # not taken as a block ...
    (notice,) = verdict.notices  # ... nor as a silent pass
    assert "could not start" in notice and "configuration error" in notice and "settings.toml:3" in notice
    closed = _hooks(workspace, HookCommand("PreToolUse", "", command, fail_closed=True)).pre_tool_use(
        "bash", {"command": "ls"}, "t")
    assert closed.block is not None and "could not start" in closed.block


def test_a_timeout_stops_the_whole_group(workspace: Path):
    command = _script(workspace, "slow.sh", "#!/bin/bash\n(sleep 30; touch late) &\nsleep 30\n")
    verdict = _hooks(workspace, HookCommand("PreToolUse", "", command, timeout=0.3)).pre_tool_use(
        "bash", {"command": "ls"}, "t")
    assert [run.ended for run in verdict.runs] == ["timeout"]
    assert verdict.notices == ("PreToolUse hook `./slow.sh` timed out after 0.3 s and was stopped",)
    assert verdict.block is None


def test_stop_all_ends_a_running_hook_and_the_call_is_not_run(workspace: Path):
    command = _script(workspace, "slow.sh", "#!/bin/bash\ntouch started\nsleep 30\n")
    hooks = _hooks(workspace, HookCommand("PreToolUse", "", command))
    verdicts = []
    thread = threading.Thread(target=lambda: verdicts.append(hooks.pre_tool_use("bash", {"command": "x"}, "t")))
    thread.start()
    deadline = time.monotonic() + 10
    while not (workspace / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    hooks.stop_all()
    thread.join(10)
    assert not thread.is_alive()
    (verdict,) = verdicts
    assert verdict.stopped and [run.ended for run in verdict.runs] == ["stopped"]
    assert verdict.block and "interrupted by the person" in verdict.block


def test_a_background_child_holding_the_output_does_not_hang_the_hook(workspace: Path):
    verdict = _hooks(workspace, HookCommand("PostToolUse", "", "sleep 60 & echo ok")).post_tool_use(
        "bash", {"command": "ls"}, {"content": "", "is_error": False}, "t")
    assert [run.ended for run in verdict.runs] == ["exited"] and verdict.runs[0].stdout.startswith("ok")


def test_a_flood_of_output_is_capped(workspace: Path):
    verdict = _hooks(workspace, HookCommand("UserPromptSubmit", "", "head -c 5000000 /dev/zero | tr '\\0' x")
                     ).user_prompt_submit("hi")
    (context,) = verdict.context
    assert len(context) < 1_100_000 and "bytes left out" in context


def test_user_prompt_and_session_start_take_plain_stdout_as_context(workspace: Path):
    hooks = _hooks(workspace, HookCommand("UserPromptSubmit", "", "echo 'branch: main'"),
                   HookCommand("SessionStart", "startup", "echo 'fresh start'"),
                   HookCommand("SessionStart", "resume", "echo 'resumed'"))
    assert hooks.user_prompt_submit("hi").context == ("branch: main",)
    assert hooks.session_start("startup").context == ("fresh start",)
    assert hooks.session_start("resume").context == ("resumed",)
    blocked = _hooks(workspace, HookCommand("UserPromptSubmit", "", "echo 'no secrets in prompts' >&2; exit 2"))
    assert blocked.user_prompt_submit("my password is x").block == "no secrets in prompts"


def test_stop_hooks_send_the_model_on_and_post_tool_use_context_reaches_it(workspace: Path):
    hooks = _hooks(workspace, HookCommand("Stop", "", "grep -q '\"stop_hook_active\": false' && "
                                          "echo '{\"decision\": \"block\", \"reason\": \"run the tests\"}' || true"),
                   HookCommand("PostToolUse", "",
                               "echo '{\"hookSpecificOutput\": {\"additionalContext\": \"lint ok\"}}'"))
    assert hooks.stop(False).block == "run the tests"
    assert hooks.stop(True).block is None  # the second stop in a turn says stop_hook_active
    assert hooks.post_tool_use("bash", {"command": "x"}, {}, "t").context == ("lint ok",)


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot confine here")
def test_a_project_hook_runs_inside_the_sandbox(workspace: Path):
    marker = f"/tmp/midstream-hook-test-{os.getpid()}"
    (workspace / ".git").mkdir()
    command = f"touch {marker}; touch .git/planted 2>/dev/null; echo done >> out.txt"
    for project in (True, False):
        _hooks(workspace, HookCommand("Stop", "", command, project=project)).stop(False)
        if project:  # a private /tmp, a read-only .git, the workspace writable
            assert not os.path.exists(marker) and not (workspace / ".git/planted").exists()
    assert (workspace / "out.txt").read_text() == "done\ndone\n"
    assert os.path.exists(marker) and (workspace / ".git/planted").exists()  # the person's own hook: as they are
    os.unlink(marker)
