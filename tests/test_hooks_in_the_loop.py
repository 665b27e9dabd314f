"""Real hook scripts (bash and Python) in temporary repositories, through the real program and loop
against the scripted server: Claude Code's schema, unchanged in meaning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import program_env, wait_until

pytestmark = pytest.mark.process


def _user_settings(text: str) -> Path:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "midstream" / "settings.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(0o755)
    return path


def _repo(workspace: Path) -> Path:
    for argv in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init", "--allow-empty"]):
        subprocess.run(argv, cwd=workspace, check=True, capture_output=True)
    return workspace


def midstream(args: list[str], workspace: Path, server: ScriptedServer, **env: str):
    return subprocess.run([sys.executable, "-m", "midstream", "--isolation", "none", *args], cwd=workspace,
                          env=program_env(ANTHROPIC_BASE_URL=server.url, **env), capture_output=True, text=True,
                          timeout=90)


def _results(server: ScriptedServer, request: int) -> list[dict]:
    return [b for b in server.requests[request]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]


def test_exit_2_blocks_a_bash_call_and_the_model_gets_the_hooks_stderr(workspace: Path, tmp_path: Path):
    hook = _script(tmp_path / "hooks" / "no-push.sh", "#!/bin/bash\ncommand=$(python3 -c 'import json,sys; "
                   "print(json.load(sys.stdin)[\"tool_input\"][\"command\"])')\n"
                   "case \"$command\" in *'git push'*)\n"
                   "  echo 'git push is not allowed: ask the person' >&2; exit 2;;\nesac\n")
    _user_settings(f'[[hooks.PreToolUse]]\nmatcher = "Bash"\nhooks = [{{ type = "command", command = "{hook}" }}]\n')
    server = ScriptedServer([reply(Text("Pushing.\n"), ToolUse("t1", "bash", {"command": "git push && touch pushed"}),
                                   ToolUse("t2", "bash", {"command": "touch listed"})),
                             reply(Text("I will ask."))])
    with server:
        done = midstream(["-p", "push it"], _repo(workspace), server)
    assert done.returncode == 0, done.stderr
    blocked, ran = _results(server, 1)
    assert blocked == {"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                       "content": "git push is not allowed: ask the person"}
    assert not (workspace / "pushed").exists()  # the call never ran
    assert ran["tool_use_id"] == "t2" and not ran.get("is_error") and (workspace / "listed").exists()


def test_stdin_carries_claude_codes_fields_and_post_tool_use_sees_the_result(workspace: Path, tmp_path: Path):
    log = tmp_path / "seen.jsonl"
    hook = _script(tmp_path / "hooks" / "log.py", "#!/usr/bin/env python3\nimport json, sys\n"
                   f"with open({str(log)!r}, 'a') as f: f.write(json.dumps(json.load(sys.stdin)) + '\\n')\n")
    _user_settings(f'[[hooks.PreToolUse]]\nhooks = [{{ type = "command", command = "{hook}" }}]\n'
                   f'[[hooks.PostToolUse]]\nmatcher = "Bash"\nhooks = [{{ type = "command", command = "{hook}" }}]\n'
                   f'[[hooks.UserPromptSubmit]]\nhooks = [{{ type = "command", command = "{hook}" }}]\n'
                   f'[[hooks.Stop]]\nhooks = [{{ type = "command", command = "{hook}" }}]\n'
                   f'[[hooks.SessionStart]]\nhooks = [{{ type = "command", command = "{hook}" }}]\n'
                   f'[[hooks.SessionEnd]]\nhooks = [{{ type = "command", command = "{hook}" }}]\n')
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "echo from-the-command"})), reply(Text("Done."))])
    with server:
        done = midstream(["-p", "say it"], workspace, server)
    assert done.returncode == 0, done.stderr
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert [s["hook_event_name"] for s in seen] == ["SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse",
                                                   "Stop", "SessionEnd"]
    session = seen[0]["session_id"]
    assert session and all(s["session_id"] == session and s["cwd"] == str(workspace) for s in seen)
    assert all(s["transcript_path"].endswith(f"{session}.jsonl") for s in seen)
    assert Path(seen[0]["transcript_path"]).exists()
    start, prompt, pre, post, stop, end = seen
    assert start["source"] == "startup" and prompt["prompt"] == "say it" and stop["stop_hook_active"] is False
    assert pre["tool_name"] == "Bash" and pre["midstream_tool_name"] == "bash" and pre["tool_use_id"] == "t1"
    assert pre["tool_input"] == {"command": "echo from-the-command"}
    assert post["tool_input"] == pre["tool_input"]
    response = post["tool_response"]
    assert "from-the-command" in response["content"] and response["is_error"] is False
    assert "from-the-command" in response["stdout"] and response["exit_status"] == 0  # as Claude Code's Bash has it
    assert response["interrupted"] is False and response["ended"] == "ran"
    assert end["reason"] == "other"


def test_user_prompt_submit_exit_2_sends_nothing_and_says_why(workspace: Path, tmp_path: Path):
    hook = _script(tmp_path / "hooks" / "secrets.py", "#!/usr/bin/env python3\nimport json, sys\n"
                   "if 'password' in json.load(sys.stdin)['prompt']:\n"
                   "    print('that prompt holds a password', file=sys.stderr)\n    sys.exit(2)\n")
    _user_settings(f'[[hooks.UserPromptSubmit]]\nhooks = [{{ type = "command", command = "{hook}" }}]\n')
    server = ScriptedServer([reply(Text("never"))])
    with server:
        done = midstream(["-p", "my password is hunter2"], workspace, server)
    assert server.requests == []
    assert done.returncode == 1 and "that prompt holds a password" in done.stderr and "not sent" in done.stderr
    from midstream.tools.conversation.transcript import Transcript

    transcript = Transcript.find(workspace)
    assert transcript is None or "hunter2" not in transcript.read_text()


@pytest.mark.parametrize("command", ["./hooks/missing.sh", "no-such-program-anywhere"])
def test_a_hook_that_cannot_launch_is_reported_as_a_configuration_error(workspace: Path, command: str):
    settings = _user_settings(f'[[hooks.PreToolUse]]\nmatcher = "Bash"\nhooks = [{{ type = "command", '
                              f'command = "{command}" }}]\n')
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "touch ran"})), reply(Text("ok"))])
    with server:
        done = midstream(["-p", "go"], workspace, server)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "could not start" in line]  # when it was to run
    assert "configuration error" in line and f"{settings}:1" in line
    (early,) = [line for line in done.stderr.splitlines() if "cannot start" in line]  # and at start, before
    assert "configuration error" in early and f"{settings}:1" in early
    assert (workspace / "ran").exists()  # not taken as a block: shown, and the call went on


def test_a_project_hook_does_not_run_in_p_and_one_line_says_so(workspace: Path):
    _script(workspace / ".midstream" / "hook.sh", "#!/bin/bash\ntouch \"$CLAUDE_PROJECT_DIR/hook-ran\"\n")
    (workspace / ".midstream" / "settings.toml").write_text(
        '[[hooks.PreToolUse]]\nhooks = [{ type = "command", command = ".midstream/hook.sh" }]\n'
        '[[hooks.Stop]]\nhooks = [{ type = "command", command = ".midstream/hook.sh" }]\n')
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "true"})), reply(Text("ok"))])
    with server:
        done = midstream(["-p", "go"], workspace, server)
    assert done.returncode == 0, done.stderr
    assert not (workspace / "hook-ran").exists()
    (line,) = [line for line in done.stderr.splitlines() if "project hook" in line]
    assert line.startswith("midstream: 2 project hooks") and "not approved" in line


def test_an_approved_project_hook_runs_until_its_definition_changes(workspace: Path):
    from midstream.sandbox.approvals import ApprovalStore, fingerprint
    from midstream.tools.hooks.approve import KIND
    from midstream.tools.hooks.config import HookCommand

    _script(workspace / ".midstream" / "hook.sh", "#!/bin/bash\necho x >> \"$CLAUDE_PROJECT_DIR/hook-ran\"\n")
    settings = workspace / ".midstream" / "settings.toml"
    settings.write_text('[[hooks.Stop]]\nhooks = [{ type = "command", command = ".midstream/hook.sh" }]\n')
    hook = HookCommand("Stop", "", ".midstream/hook.sh")
    ApprovalStore().approve(fingerprint(KIND, workspace, hook.definition()), hook.label(), workspace)
    server = ScriptedServer([reply(Text("ok")), reply(Text("ok"))])
    with server:
        assert midstream(["-p", "go"], workspace, server).returncode == 0
        settings.write_text('[[hooks.Stop]]\nhooks = [{ type = "command", command = ".midstream/hook.sh", '
                            'timeout = 5 }]\n')
        changed = midstream(["-p", "go"], workspace, server)
    assert (workspace / "hook-ran").read_text() == "x\n"  # the changed definition did not run
    assert "1 project hook from" in changed.stderr


def test_a_formatter_hooks_edit_is_undone_with_the_turn(workspace: Path, tmp_path: Path):
    (workspace / "app.py").write_text("x=1\n")
    _repo(workspace)
    formatter = _script(tmp_path / "hooks" / "fmt.py", "#!/usr/bin/env python3\nimport json, sys\n"
                        "path = json.load(sys.stdin)['tool_input']['file_path']\n"
                        "text = open(path).read().replace('=', ' = ')\nopen(path, 'w').write(text)\n"
                        "open('formatted.log', 'w').write(path)\n")
    _user_settings(f'[[hooks.PostToolUse]]\nmatcher = "Edit|Write"\n'
                   f'hooks = [{{ type = "command", command = "{formatter}" }}]\n')
    server = ScriptedServer([reply(ToolUse("t1", "edit_file", {"path": "app.py", "old_string": "x=1",
                                                                "new_string": "x=2"})), reply(Text("Edited."))])
    with server:
        done = midstream(["-p", "edit"], workspace, server)
    assert done.returncode == 0, done.stderr
    assert (workspace / "app.py").read_text() == "x = 2\n" and (workspace / "formatted.log").exists()
    undone = subprocess.run([sys.executable, "-m", "midstream", "--undo"], cwd=workspace, env=program_env(),
                            capture_output=True, text=True, timeout=60)
    assert undone.returncode == 0, undone.stderr
    assert (workspace / "app.py").read_text() == "x=1\n"
    assert not (workspace / "formatted.log").exists()  # what the hook created goes back too


@pytest.mark.parametrize("key", ["ctrl-c", "esc"])
def test_a_slow_hook_is_stopped_by_ctrl_c_or_esc_in_a_pty(workspace: Path, tmp_path: Path, key: str):
    pid_file = tmp_path / "hook.pid"
    hook = _script(tmp_path / "hooks" / "slow.sh", f"#!/bin/bash\necho $$ > {pid_file}\nsleep 300\n")
    _user_settings(f'[[hooks.PreToolUse]]\nmatcher = "Bash"\nhooks = [{{ type = "command", command = "{hook}", '
                   'timeout = 600 }]\n')
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "touch ran"})), reply(Text("Understood."))])
    with server:
        child = pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", "none", "--mode", "auto"],
                              cwd=str(workspace), env=program_env(ANTHROPIC_BASE_URL=server.url, TERM="xterm"),
                              dimensions=(40, 120), encoding="utf-8", timeout=30)
        child.expect("› ")
        child.sendline("run it")
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 20)
        child.expect("PreToolUse hook")  # the hook is on the call's status line while it runs
        pid = int(pid_file.read_text())
        if key == "esc":
            child.send("\x1b")
        else:
            child.sendintr()
        child.expect("interrupted")
        child.expect("› ")
        assert wait_until(lambda: not _alive(pid), 10)
        child.sendline("stop there")
        child.expect("Understood")
        child.expect("› ")
        child.sendeof()
        child.expect(pexpect.EOF)
    assert not (workspace / "ran").exists()
    (result,) = _results(server, 1)
    assert result["is_error"] is True and "interrupted" in result["content"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")


def test_an_interactive_start_asks_once_for_a_project_hook_and_remembers(workspace: Path):
    _script(workspace / ".midstream" / "hook.sh", "#!/bin/bash\necho ran >> \"$CLAUDE_PROJECT_DIR/hook-ran\"\n")
    (workspace / ".midstream" / "settings.toml").write_text(
        '[[hooks.Stop]]\nhooks = [{ type = "command", command = ".midstream/hook.sh" }]\n')
    server = ScriptedServer([reply(Text("First.")), reply(Text("Second."))])

    def session(approve: str | None) -> None:
        child = pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", "none"], cwd=str(workspace),
                              env=program_env(ANTHROPIC_BASE_URL=server.url, TERM="xterm"), dimensions=(40, 120),
                              encoding="utf-8", timeout=30)
        if approve is not None:
            child.expect("Stop hook `.midstream/hook.sh`")
            child.expect(r"\[y/N\]")
            child.sendline(approve)
        child.expect("› ")
        child.sendline("hi")
        child.expect("First|Second")
        child.expect("› ")
        child.sendeof()
        child.expect(pexpect.EOF)

    with server:
        session("y")
        session(None)  # approved before: no question, and it runs
    assert (workspace / "hook-ran").read_text() == "ran\nran\n"


def _running_a_slow_prompt_hook(workspace: Path, tmp_path: Path, server: ScriptedServer) -> tuple[
        subprocess.Popen[str], Path]:
    """``-p go`` started, once its UserPromptSubmit hook (a 300 s sleep) runs; the hook writes its pid."""
    pid_file = tmp_path / "hook.pid"
    hook = _script(tmp_path / "hooks" / "slow.sh", f"#!/bin/bash\necho $$ > {pid_file}\nsleep 300\n")
    _user_settings(f'[[hooks.UserPromptSubmit]]\nhooks = [{{ type = "command", command = "{hook}", timeout = 600 }}]\n')
    process = subprocess.Popen([sys.executable, "-m", "midstream", "--isolation", "none", "-p", "go"],
                               cwd=workspace, env=program_env(ANTHROPIC_BASE_URL=server.url),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 20)
    return process, pid_file


def test_sigterm_while_a_hook_runs_leaves_no_hook_behind(workspace: Path, tmp_path: Path):
    server = ScriptedServer([reply(Text("never"))])
    with server:
        process, pid_file = _running_a_slow_prompt_hook(workspace, tmp_path, server)
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert process.returncode != 0
    assert wait_until(lambda: not _alive(int(pid_file.read_text())), 10), (process.returncode, err)
    assert server.requests == []


def test_a_failing_hook_is_shown_and_the_call_goes_on_unless_it_is_fail_closed(workspace: Path, tmp_path: Path):
    broken = _script(tmp_path / "hooks" / "broken.sh", "#!/bin/bash\necho 'jq: parse error' >&2\nexit 1\n")
    context = "echo '{\\\"hookSpecificOutput\\\": {\\\"additionalContext\\\": \\\"this repo uses tabs\\\"}}'"
    _user_settings(f'[[hooks.PreToolUse]]\nmatcher = "Bash"\nhooks = [{{ type = "command", command = "{broken}" }}]\n'
                   f'[[hooks.PreToolUse]]\nmatcher = "Write"\nhooks = [{{ type = "command", command = "{broken}", '
                   'fail_closed = true }]\n'
                   f'[[hooks.PreToolUse]]\nmatcher = "Bash"\nhooks = [{{ type = "command", command = "{context}" }}]\n')
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "touch ran"}),
                                   ToolUse("t2", "write_file", {"path": "new.txt", "content": "x"})),
                             reply(Text("ok"))])
    with server:
        done = midstream(["-p", "go"], workspace, server)
    assert done.returncode == 0, done.stderr
    shown = [line for line in done.stderr.splitlines() if line.startswith("midstream: PreToolUse hook")]
    assert len(shown) == 2 and all("failed with exit status 1: jq: parse error" in line for line in shown)
    ran, refused = _results(server, 1)
    assert (workspace / "ran").exists() and not ran.get("is_error")  # fails open: shown, and the call goes on
    assert "[PreToolUse hook context: this repo uses tabs]" in ran["content"]
    assert refused["is_error"] and "fail_closed" in refused["content"] and not (workspace / "new.txt").exists()


def test_what_a_hook_writes_after_a_read_is_undone_with_the_turn(workspace: Path, tmp_path: Path):
    (workspace / "notes.txt").write_text("hello\n")
    _repo(workspace)
    _user_settings('[[hooks.PostToolUse]]\nmatcher = "Read"\nhooks = [{ type = "command", '
                   'command = "echo seen > read.log" }]\n')
    server = ScriptedServer([reply(ToolUse("t1", "read_file", {"path": "notes.txt"})), reply(Text("Read."))])
    with server:
        assert midstream(["-p", "read"], workspace, server).returncode == 0
    assert (workspace / "read.log").read_text() == "seen\n"
    undone = subprocess.run([sys.executable, "-m", "midstream", "--undo"], cwd=workspace, env=program_env(),
                            capture_output=True, text=True, timeout=60)
    assert undone.returncode == 0, undone.stderr
    assert not (workspace / "read.log").exists() and (workspace / "notes.txt").read_text() == "hello\n"


def test_ctrl_c_during_a_prompt_hook_in_p_sends_nothing_and_exits_130(workspace: Path, tmp_path: Path):
    import signal

    server = ScriptedServer([reply(Text("never"))])
    with server:
        process, pid_file = _running_a_slow_prompt_hook(workspace, tmp_path, server)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and server.requests == []
    assert wait_until(lambda: not _alive(int(pid_file.read_text())), 10)
