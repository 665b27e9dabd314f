"""Attacks on start-up's deferred work (tools/startup.py): what waits must never change what is seen or kept."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from midstream.sandbox.isolation import bwrap_works
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import git, program_env, wait_until

pytestmark = pytest.mark.process


def _broken_bwrap_path(tmp_path: Path) -> str:
    """A PATH (outside the workspace) whose bwrap cannot create namespaces, as in a locked-down container."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("git", "bash", "sh", "env", "cat"):
        if found := shutil.which(program):
            (bin_dir / program).symlink_to(found)
    fake = bin_dir / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    return str(bin_dir)


@pytest.mark.parametrize("broken", ["missing", "no-namespaces"])
def test_the_unconfined_warning_is_out_before_the_first_command_runs(workspace, tmp_path, broken):
    """The first reply calls bash at once: its effect lands in the same file as stderr, after the warning."""
    if broken == "missing":
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for program in ("git", "bash", "sh", "env", "cat"):
            if found := shutil.which(program):
                (bin_dir / program).symlink_to(found)
        path = str(bin_dir)
    else:
        path = _broken_bwrap_path(tmp_path)
    out = tmp_path / "out.txt"
    for attempt in range(int(os.environ.get("ATTACK_TRIES", "8"))):  # a race: several tries
        out.write_bytes(b"")
        server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": f"echo COMMAND-RAN >> {out}"})),
                                 reply(Text("done"))])
        with server, open(out, "ab") as sink:
            done = subprocess.run([sys.executable, "-m", "midstream", "-p", "go", "--mode", "auto"], cwd=workspace,
                                  env=program_env(ANTHROPIC_BASE_URL=server.url, PATH=path), stdout=sink,
                                  stderr=sink, timeout=60)
        text = out.read_text()
        assert done.returncode == 0, text
        assert "Traceback" not in text
        assert "unconfined" in text and "COMMAND-RAN" in text, text
        assert text.index("unconfined") < text.index("COMMAND-RAN"), f"attempt {attempt}:\n{text}"


def test_json_output_carries_the_sandbox_when_the_first_request_fails(workspace, tmp_path):
    """The server refuses every request: the run fails, yet its json still says how commands would have run."""
    server = ScriptedServer([{"status": 500, "error": {"type": "api_error", "message": "down"}}] * 3)
    with server:
        done = subprocess.run([sys.executable, "-m", "midstream", "-p", "go", "--output-format", "json",
                               "--max-attempts", "1"], cwd=workspace,
                              env=program_env(ANTHROPIC_BASE_URL=server.url, PATH=_broken_bwrap_path(tmp_path)),
                              capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    assert "sandbox" in result, result


@pytest.mark.parametrize("isolation", ["none", "auto"])
@pytest.mark.parametrize("first", ["write_file", "bash"])
@pytest.mark.parametrize("repository", [False, True])
def test_the_very_first_call_of_a_session_is_undone(workspace, isolation, first, repository):
    """The first reply writes at once, before start-up's held work (undo's decision) may have run."""
    if isolation == "auto" and not bwrap_works():
        pytest.skip("bubblewrap cannot run here")
    if repository:
        git(workspace, "init", "-q")
    (workspace / "keep.txt").write_text("keep\n")
    call = (ToolUse("t1", "write_file", {"path": "keep.txt", "content": "clobbered\n"}) if first == "write_file"
            else ToolUse("t1", "bash", {"command": "echo clobbered > keep.txt; echo new > made.txt"}))
    server = ScriptedServer([reply(call), reply(Text("ok"))])
    env = program_env(ANTHROPIC_BASE_URL=server.url)
    run = [sys.executable, "-m", "midstream", "--isolation", isolation, "--mode", "auto", "--grace", "0"]
    with server:
        done = subprocess.run([*run, "-p", "go"], cwd=workspace, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (workspace / "keep.txt").read_text() == "clobbered\n", done.stderr
    undone = subprocess.run([*run, "--undo"], cwd=workspace, env=env, capture_output=True, text=True, timeout=60)
    assert undone.returncode == 0, undone.stderr
    assert "Traceback" not in undone.stderr
    assert (workspace / "keep.txt").read_text() == "keep\n", undone.stderr
    assert not (workspace / "made.txt").exists()


def _request_text(request: dict) -> str:
    return json.dumps(request["body"]["messages"])


def test_a_kill_nine_while_the_reply_still_streams_is_reported_by_continue(workspace, tmp_path):
    """A call runs while its reply streams on; kill -9: its notes (written, not fsynced) tell --continue what ran."""
    ran = tmp_path / "ran.txt"
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": f"echo x > {ran}"}),
                                   Text("still talking " * 40, chunk=8, delay=0.5)), reply(Text("seen"))])
    env = program_env(ANTHROPIC_BASE_URL=server.url)
    run = [sys.executable, "-m", "midstream", "--isolation", "none", "--mode", "auto", "--grace", "0"]
    with server:
        child = subprocess.Popen([*run, "-p", "go"], cwd=workspace, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        assert wait_until(ran.exists, 30)
        assert wait_until(lambda: '"call_finished"' in _transcript_text(), 30)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(10)
        done = subprocess.run([*run, "--continue", "-p", "what happened?"], cwd=workspace, env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    told = _request_text(server.requests[-1])
    assert "Before the agent exited" in told and "echo x" in told and "(finished)" in told, told


def _transcript_text() -> str:
    from midstream.tools.conversation.transcript import state_dir

    return "".join(p.read_text(errors="replace") for p in state_dir().rglob("*.jsonl"))


def test_a_finished_call_of_a_committed_reply_is_not_called_unknown_after_kill_nine(workspace, tmp_path):
    ran = tmp_path / "ran.txt"
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": f"echo x > {ran}"}),
                                   ToolUse("t2", "bash", {"command": f"echo y > {ran}.2; sleep 30"})),
                             reply(Text("seen"))])
    env = program_env(ANTHROPIC_BASE_URL=server.url)
    run = [sys.executable, "-m", "midstream", "--isolation", "none", "--mode", "auto", "--grace", "0"]
    with server:
        child = subprocess.Popen([*run, "-p", "go"], cwd=workspace, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        assert wait_until(Path(f"{ran}.2").exists, 30)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(10)
        done = subprocess.run([*run, "--continue", "-p", "what happened?"], cwd=workspace, env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    results = {b["tool_use_id"]: b["content"] for m in server.requests[-1]["body"]["messages"]
               if m["role"] == "user" for b in m["content"] if b.get("type") == "tool_result"}
    assert "unknown" not in str(results["t1"]), results  # t1 finished: its call_finished note says so
    assert "unknown" in str(results["t2"])


def test_a_first_request_dropped_after_its_body_is_written_retries_and_keeps_the_log(workspace, tmp_path):
    """The body went out (held work released) on a connection that then broke: the retry still runs the
    command after the warning, and the log has both attempts."""
    from midstream.tools.conversation.transcript import state_dir
    from midstream.tools.testing.raw_server import RawServer, Script, reply_bytes

    out = tmp_path / "out.txt"
    events = [reply(ToolUse("t1", "bash", {"command": f"echo COMMAND-RAN >> {out}"}))["events"],
              reply(Text("done"))["events"]]
    script = Script([lambda request, connection: "close",  # read the whole body, answer nothing
                     reply_bytes("anthropic", events[0]), reply_bytes("anthropic", events[1])])
    with RawServer(script) as server, open(out, "ab") as sink:
        done = subprocess.run([sys.executable, "-m", "midstream", "-p", "go", "--mode", "auto"], cwd=workspace,
                              env=program_env(ANTHROPIC_BASE_URL=server.url, PATH=_broken_bwrap_path(tmp_path)),
                              stdout=sink, stderr=sink, timeout=60)
    text = out.read_text()
    assert done.returncode == 0, text
    assert "Traceback" not in text
    assert text.index("unconfined") < text.index("COMMAND-RAN"), text
    log = (state_dir() / "logs" / "midstream.log").read_text()
    assert log.count("HTTP 200") >= 2 and ("retry" in log.lower() or "attempt" in log.lower()), log[-3000:]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_the_first_moments_exits_cleanly_and_the_session_continues(workspace, signum):
    """Ctrl-C (or SIGTERM) at moments across start-up: the usual exit code, no traceback, --continue works."""
    problems = []
    for delay in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.6):
        server = ScriptedServer([reply(Text("slow answer " * 20, chunk=4, delay=0.05))] * 1 + [reply(Text("again"))])
        env = program_env(ANTHROPIC_BASE_URL=server.url)
        run = [sys.executable, "-m", "midstream", "--isolation", "none"]
        with server:
            child = subprocess.Popen([*run, "-p", "go"], cwd=workspace, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            time.sleep(delay)
            child.send_signal(signum)
            stdout, stderr = child.communicate(timeout=30)
            again = subprocess.run([*run, "--continue", "-p", "still there?"], cwd=workspace, env=env,
                                   capture_output=True, text=True, timeout=60)
        expected = {signal.SIGINT: (130, -signal.SIGINT), signal.SIGTERM: (143, -signal.SIGTERM, 130)}[signum]
        if child.returncode not in expected or "Traceback" in stderr:
            problems.append(f"{delay}: rc {child.returncode}: {stderr[-800:]}")
        never_began = again.returncode == 2 and "found no earlier session" in again.stderr  # before the message
        if (again.returncode != 0 and not never_began) or "Traceback" in again.stderr:
            problems.append(f"{delay} --continue: rc {again.returncode}: {again.stderr[-800:]}")
    assert not problems, "\n".join(problems)


def _slow_broken_bwrap_path(tmp_path: Path) -> str:
    """A bwrap that takes its time to fail: the probe outlasts a quick reply."""
    path = _broken_bwrap_path(tmp_path)
    (Path(path) / "bwrap").write_text("#!/bin/sh\nsleep 0.5\necho 'bwrap: No permissions to create new namespace' >&2\n"
                                      "exit 1\n")
    return path


def test_json_output_carries_the_sandbox_when_the_probe_outlasts_the_reply(workspace, tmp_path):
    server = ScriptedServer([reply(Text("done"))])
    with server:
        done = subprocess.run([sys.executable, "-m", "midstream", "-p", "go", "--output-format", "json"],
                              cwd=workspace, env=program_env(ANTHROPIC_BASE_URL=server.url,
                                                             PATH=_slow_broken_bwrap_path(tmp_path)),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sandbox"] is not None and result["sandbox"]["confined"] is False, result


def test_text_output_warns_when_the_probe_outlasts_the_reply(workspace, tmp_path):
    server = ScriptedServer([reply(Text("done"))])
    with server:
        done = subprocess.run([sys.executable, "-m", "midstream", "-p", "go"], cwd=workspace,
                              env=program_env(ANTHROPIC_BASE_URL=server.url, PATH=_slow_broken_bwrap_path(tmp_path)),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "unconfined" in done.stderr, done.stderr


def test_a_replayed_run_warns_before_its_first_command_runs_unconfined(workspace, tmp_path):
    """--replay writes no request to a socket: what start-up held must still be released (warning, log)."""
    from midstream.tools.conversation.transcript import state_dir

    recording, out = tmp_path / "recording", tmp_path / "out.txt"
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": f"echo COMMAND-RAN >> {out}"})),
                             reply(Text("done"))])
    path = _broken_bwrap_path(tmp_path)
    with server:
        first = subprocess.run([sys.executable, "-m", "midstream", "-p", "go", "--mode", "auto", "--record",
                                str(recording)], cwd=workspace, env=program_env(ANTHROPIC_BASE_URL=server.url,
                                                                                PATH=path),
                               capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    out.write_bytes(b"")
    log = state_dir() / "logs" / "midstream.log"
    log.unlink(missing_ok=True)
    with open(out, "ab") as sink:
        again = subprocess.run([sys.executable, "-m", "midstream", "-p", "go", "--mode", "auto", "--replay",
                                str(recording)], cwd=workspace, env=program_env(PATH=path), stdout=sink, stderr=sink,
                               timeout=60)
    text = out.read_text()
    assert again.returncode == 0, text
    assert "COMMAND-RAN" in text, text
    assert "unconfined" in text and text.index("unconfined") < text.index("COMMAND-RAN"), text
