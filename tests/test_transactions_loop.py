"""Transactions through the real loop: the scripted model on 127.0.0.1, real bubblewrap, real overlays.

Policies act on what a command did: auto counts down the real deletions before anything is applied,
-p does not apply them, ask shows them; signals, Esc and a broken reply discard a pending change set;
/undo and --undo take back exactly what was applied.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from midstream.sandbox.isolation import bwrap_works
from midstream.tools.events import ToolAsking, ToolFinished, ToolGrace
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import git, program_env, wait_until

pytestmark = [pytest.mark.process,
              pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here (.ci/run installs it)")]


@pytest.fixture
def repo(workspace: Path) -> Path:
    git(workspace, "init", "-q")
    (workspace / ".gitignore").write_text("data/\nbuild/\n")
    (workspace / "app.py").write_text("print('app')\n")
    git(workspace, "add", "-A")
    git(workspace, "commit", "-qm", "init")
    (workspace / "data").mkdir()
    for i in range(50):
        (workspace / "data" / f"row{i}.bin").write_bytes(os.urandom(100 + i))
    (workspace / ".env").write_text("TOKEN=1\n")
    return workspace


def results(server: ScriptedServer, request: int = 1) -> list[dict]:
    return [b for b in server.requests[request]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and ".git" not in p.parts}


def test_auto_counts_down_the_real_deletions_before_anything_is_applied(make_agent, repo: Path) -> None:
    seen_during: list[bool] = []
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "env -S 'rm -rf data .env'"})),
                             reply(Text("done"))])
    with server:
        agent, renderer = make_agent(server, grace_seconds=0.5)
        original = agent.gate.announce

        def announce(event: object) -> None:
            if isinstance(event, ToolGrace):
                seen_during.append((repo / "data" / "row0.bin").exists() and (repo / ".env").exists())
            original(event)

        agent.gate.announce = announce
        before = snapshot(repo)
        agent.send("clean")
    (grace,) = renderer.of(ToolGrace)
    assert seen_during == [True]  # the countdown came while everything was still there
    assert any(t.startswith("deletes data/ (50 files") and "ignored: not in git" in t for t in grace.targets)
    assert any(".env" in t and "untracked: not in git" in t for t in grace.targets)
    assert not (repo / "data").exists() and not (repo / ".env").exists()  # applied after the countdown
    (result,) = results(server)
    assert "[applied to the workspace:" in result["content"]
    report = agent.undo.undo()
    assert report.undone
    assert snapshot(repo) == before  # ignored files back to the byte


def test_print_mode_does_not_apply_what_git_cannot_give_back(make_agent, repo: Path) -> None:
    commands = ["python3 -c \"getattr(__import__('shutil'),'rm'+'tree')('data')\"", "echo new > made.txt",
                "rm app.py"]
    server = ScriptedServer([reply(*[ToolUse(f"t{i}", "bash", {"command": c}) for i, c in enumerate(commands)]),
                             reply(Text("done"))])
    with server:
        agent, renderer = make_agent(server, refuse_destructive=True, workers=1)
        agent.send("go")
    refused, made, tracked = results(server)
    assert refused["is_error"] and "NOT applied" in refused["content"] and "deletes data/" in refused["content"]
    assert (repo / "data" / "row0.bin").exists()
    assert (repo / "made.txt").read_text() == "new\n"  # harmless: applied
    assert not (repo / "app.py").exists() and "is_error" not in tracked  # committed: git gives it back
    assert not renderer.of(ToolGrace)


def test_ask_mode_shows_the_change_set_and_discards_on_no(make_agent, repo: Path) -> None:
    questions: list[str] = []
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "cat app.py"}),
                                   ToolUse("t2", "bash", {"command": "perl -e 'unlink \".env\"'; echo x >> app.py"})),
                             reply(Text("ok"))])
    with server:
        agent, renderer = make_agent(server, mode="ask", workers=1)
        agent.gate.confirm = lambda question, cancelled: questions.append(question) or "no"
        agent.send("go")
    (asked,) = renderer.of(ToolAsking)  # the harmless one asked nothing
    assert "deletes .env (8 bytes, untracked: not in git)" in asked.changes
    assert "+print('app')" not in asked.changes and any(line.startswith("+x") for line in asked.changes)
    assert len(questions) == 1 and "perl" in questions[0]
    read, discarded = results(server)
    assert "app" in read["content"] and discarded["is_error"] and "discarded" in discarded["content"]
    assert (repo / ".env").exists() and (repo / "app.py").read_text() == "print('app')\n"


def test_build_caches_that_only_grow_do_not_nag(make_agent, repo: Path) -> None:
    (repo / "pkg").mkdir()
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "mod.py").write_text("X = 1\n")
    command = "python3 -c 'import pkg.mod' && mkdir -p .pytest_cache && echo 1 > .pytest_cache/v"
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": command}),
                                   ToolUse("t2", "bash", {"command": "echo 2 > .pytest_cache/v"})),
                             reply(Text("ok"))])
    with server:
        agent, renderer = make_agent(server, grace_seconds=30, workers=1)
        agent.send("go")
    assert not renderer.of(ToolGrace)
    assert list((repo / "pkg" / "__pycache__").iterdir()) and (repo / ".pytest_cache" / "v").read_text() == "2\n"


def test_a_reply_that_breaks_off_during_a_countdown_applies_nothing(make_agent, repo: Path) -> None:
    broken = reply(ToolUse("t1", "bash", {"command": "rm -rf data"}), Text("and now more text " * 20, delay=0.05))
    broken["drop_after"] = len(broken["events"]) - 6  # the tool block is complete; the text breaks off
    server = ScriptedServer([broken, reply(Text("retried, nothing to do"))])
    with server:
        agent, renderer = make_agent(server, grace_seconds=30)
        started = time.monotonic()
        agent.send("go")
    assert time.monotonic() - started < 25  # the countdown ended with the reply, not after 30 s
    assert renderer.of(ToolGrace)
    assert len(list((repo / "data").iterdir())) == 50
    (finished,) = [e for e in renderer.of(ToolFinished) if e.id == "t1"]
    assert finished.result.facts.ended == "discarded" and "reply breaking off" in finished.result.content


def test_twenty_commands_in_a_turn_run_at_most_three_git_processes(make_agent, repo: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "git.log"
    shim = tmp_path / "bin"
    shim.mkdir()
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True).stdout.strip()
    (shim / "git").write_text(f"#!/bin/sh\necho \"$@\" >> {log}\nexec {real} \"$@\"\n")
    (shim / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    commands = [f"echo {i} > out{i}.txt" if i % 4 else "ls" for i in range(19)] + ["rm -f data/row1.bin"]
    server = ScriptedServer([reply(*[ToolUse(f"t{i}", "bash", {"command": c}) for i, c in enumerate(commands)]),
                             reply(Text("ok"))])
    with server:
        agent, _ = make_agent(server, grace_seconds=0.05, workers=1)
        agent.send("go")
    ran = log.read_text().splitlines() if log.exists() else []
    assert len(ran) <= 3, ran
    assert (repo / "out1.txt").read_text() == "1\n" and not (repo / "data" / "row1.bin").exists()


def _spawn_print_mode(server: ScriptedServer, repo: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "midstream", "--mode", "auto", "--grace", "60", *extra,
                             "-p", "go"], cwd=repo, env=program_env(ANTHROPIC_BASE_URL=server.url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize(("sig", "isolation"), [(signal.SIGTERM, "auto"), (signal.SIGHUP, "auto"),
                                                 (signal.SIGTERM, "none"), (signal.SIGHUP, "none")])
def test_a_signal_during_the_countdown_applies_nothing(repo: Path, sig: signal.Signals, isolation: str) -> None:
    """With overlays the change set is counting down; without (the fallback) the command itself is."""
    command = "awk 'BEGIN{system(\"rm -rf data\")}'" if isolation == "auto" else "rm -rf data"
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": command})),
                             reply(Text("ok")), reply(Text("continued"))])
    with server:
        process = _spawn_print_mode(server, repo, "--isolation", isolation)
        assert wait_until(lambda: any("sent:message_stop" in line for line in server.log), 30)
        time.sleep(1.5)  # the command ran in its overlay; its change set is counting down (60 s)
        assert len(list((repo / "data").iterdir())) == 50
        process.send_signal(sig)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 128 + sig, err
        assert len(list((repo / "data").iterdir())) == 50
        again = subprocess.run([sys.executable, "-m", "midstream", "--continue", "-p", "and now?"], cwd=repo,
                               env=program_env(ANTHROPIC_BASE_URL=server.url), capture_output=True, text=True,
                               timeout=60)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == "ok"  # the next scripted reply: the session went on


def test_undo_is_refused_while_another_process_runs_the_session(repo: Path) -> None:
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "echo a > a.txt"})),
                             reply(ToolUse("t2", "bash", {"command": "sleep 30"})), reply(Text("ok"))])
    with server:
        process = _spawn_print_mode(server, repo)
        try:
            assert wait_until(lambda: (repo / "a.txt").exists(), 30)
            refused = subprocess.run([sys.executable, "-m", "midstream", "--undo"], cwd=repo, env=program_env(),
                                     capture_output=True, text=True, timeout=60)
        finally:
            process.kill()
            process.communicate()
    assert refused.returncode != 0
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("midstream: --undo refused") and "another midstream" in lines[0]
    assert (repo / "a.txt").read_text() == "a\n"


def test_undo_after_the_session_leaves_later_edits_and_other_sessions_alone(repo: Path) -> None:
    first = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "rm -rf data; echo turn > notes.txt"})),
                            reply(Text("ok"))])
    with first:
        done = subprocess.run([sys.executable, "-m", "midstream", "--mode", "auto", "--grace", "0.1", "-p", "go"],
                              cwd=repo, env=program_env(ANTHROPIC_BASE_URL=first.url), capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
    with open(repo / "notes.txt", "a") as handle:
        handle.write("mine\n")
    undone = subprocess.run([sys.executable, "-m", "midstream", "--undo"], cwd=repo, env=program_env(),
                            capture_output=True, text=True, timeout=60)
    assert undone.returncode == 0, undone.stderr
    assert len(list((repo / "data").iterdir())) == 50
    assert (repo / "notes.txt").read_text() == "turn\nmine\n"
    assert "kept (changed since the turn) notes.txt" in undone.stderr


def test_the_person_interrupting_a_command_discards_its_changes(make_agent, repo: Path) -> None:
    command = "rm -rf data; echo partial > half.txt; sleep 30"
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": command})), reply(Text("ok"))])
    with server:
        agent, renderer = make_agent(server)
        threading.Timer(2.0, lambda: agent.calls.stop(kill=False)).start()
        agent.send("go")
    assert len(list((repo / "data").iterdir())) == 50 and not (repo / "half.txt").exists()
    (finished,) = renderer.of(ToolFinished)
    assert "ran in isolation, so whatever part of its work it did was discarded" in finished.result.content


def test_the_sandbox_set_up_ahead_sees_the_workspace_as_it_is_when_the_command_comes(make_agent, repo: Path) -> None:
    calls = [ToolUse("t1", "bash", {"command": "echo one > a.txt"}),
             ToolUse("t2", "write_file", {"path": "a.txt", "content": "two\n"}),
             ToolUse("t3", "bash", {"command": "cat a.txt; ls data | wc -l; echo three >> a.txt"})]
    server = ScriptedServer([reply(*calls), reply(Text("ok"))])
    (repo / "data" / "row0.bin").unlink()  # changed before the first command: seen by every later one
    with server:
        agent, _ = make_agent(server, workers=1)
        agent.send("go")
    first, written, third = results(server)
    assert "two\n49\n" in third["content"]
    assert (repo / "a.txt").read_text() == "two\nthree\n"
    report = agent.undo.undo()  # the command, the file tool and the command again, newest first
    assert report.undone and not (repo / "a.txt").exists(), report.lines()
