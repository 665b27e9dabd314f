"""midstream trusts nothing a command can write: planted programs, nested repositories, its own environment.

The real program against the scripted server on 127.0.0.1; hostile files written by the test; marker
files outside the workspace say whether anything planted ran on the host.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from midstream.sandbox import programs
from midstream.sandbox.git import run_git
from midstream.sandbox.isolation import bwrap_works
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import program_env

pytestmark = pytest.mark.process
KEY = "sk-ant-api03-" + "Q" * 40


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    git(workspace, "init", "-q")
    (workspace / "a.txt").write_text("a\n")
    git(workspace, "add", ".")
    git(workspace, "commit", "-qm", "first")
    return workspace


def midstream(workspace: Path, server: ScriptedServer, *extra: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "midstream", "-p", "go", "--mode", "auto", *extra], cwd=workspace,
                          env=program_env(ANTHROPIC_BASE_URL=server.url, ANTHROPIC_API_KEY=KEY, **env),
                          capture_output=True, text=True, timeout=120)


def _plant(directory: Path, name: str, marker: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    planted = directory / name
    planted.write_text(f"#!/bin/sh\nenv > {marker}-{name}\nexec /usr/bin/{name} \"$@\"\n")
    planted.chmod(0o755)


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here (.ci/run installs it)")
def test_a_planted_git_and_bwrap_on_path_are_never_run(repo, tmp_path):
    marker = tmp_path / "ran"
    _plant(repo / ".venv" / "bin", "git", marker)
    _plant(repo / ".venv" / "bin", "bwrap", marker)
    server = ScriptedServer([
        reply(ToolUse("t1", "write_file", {"path": "b.txt", "content": "b\n"}),
              ToolUse("t2", "bash", {"command": "grep Seccomp: /proc/self/status; echo ran-in-sandbox"})),
        reply(Text("done")),
    ])
    path = f"{repo / '.venv' / 'bin'}:{os.environ['PATH']}"
    with server:
        done = midstream(repo, server, "--isolation", "bwrap", PATH=path, VIRTUAL_ENV=str(repo / ".venv"))
    assert done.returncode == 0, done.stderr
    results = str(server.requests[1]["body"]["messages"][-1])
    assert "Seccomp:\\t2" in results and "ran-in-sandbox" in results  # confined, by the real bubblewrap
    assert (repo / "b.txt").read_text() == "b\n"
    assert list(tmp_path.glob("ran*")) == []
    # The control: with that PATH, a plain lookup finds the planted one.
    assert subprocess.run(["git", "--version"], env={**os.environ, "PATH": path}, capture_output=True).returncode == 0
    assert (tmp_path / "ran-git").exists()


def test_the_resolver_skips_path_entries_inside_the_workspace(repo, tmp_path, monkeypatch):
    _plant(repo / ".venv" / "bin", "git", tmp_path / "ran")
    monkeypatch.setenv("PATH", f"{repo / '.venv' / 'bin'}:.:{os.environ['PATH']}")
    programs.pin_workspace(repo)
    assert programs._search("git") not in (None, str(repo / ".venv" / "bin" / "git"))


def test_a_nested_repositorys_filter_and_a_gitmodules_ignore_none_run_nothing_on_the_host(repo, tmp_path):
    marker = tmp_path / "pwned"
    evil = repo / "evil"
    evil.mkdir()
    git(evil, "init", "-q")
    (evil / ".gitattributes").write_text("* filter=x\n")
    (evil / "f.txt").write_text("one\n")
    git(evil, "add", ".")
    git(evil, "commit", "-qm", "e")
    for key in ("filter.x.clean", "filter.x.process", "core.fsmonitor"):
        git(evil, "config", key, f"sh -c 'touch {marker}-{key.replace('.', '_')}; cat'")
    (evil / "f.txt").write_text("two\n")  # modified: a status inside it would run the clean filter
    # A registered submodule with ignore = none: the start-up git status would enter it.
    sub_origin = tmp_path / "origin"
    sub_origin.mkdir()
    git(sub_origin, "init", "-q")
    git(sub_origin, "commit", "-q", "--allow-empty", "-m", "s")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub_origin), "sub")
    (repo / ".gitmodules").write_text((repo / ".gitmodules").read_text() + "\tignore = none\n")
    git(repo, "commit", "-qam", "submodule")
    git(repo / "sub", "config", "core.fsmonitor", f"sh -c 'touch {marker}-sub'")
    (repo / "sub" / "dirty").write_text("x")
    (evil / "f.txt").write_text("three\n")
    server = ScriptedServer([
        reply(ToolUse("t1", "write_file", {"path": "evil/f.txt", "content": "four\n"})),
        reply(ToolUse("t2", "write_file", {"path": "c.txt", "content": "c\n"})),
        reply(Text("done")),
    ])
    with server:
        done = midstream(repo, server, "--isolation", "none")
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.glob("pwned*")) == [], list(tmp_path.glob("pwned*"))
    for args in (["status", "--short"], ["diff"], ["log", "-1", "-p"]):
        run_git(args, repo)
    assert list(tmp_path.glob("pwned*")) == []
    subprocess.run(["git", "status"], cwd=repo, capture_output=True)
    subprocess.run(["git", "status"], cwd=evil, capture_output=True)
    assert list(tmp_path.glob("pwned*"))  # the control: plain git runs what was planted


def test_no_process_midstream_starts_has_the_key_and_proc_environ_does_not_show_it(repo, tmp_path):
    _plant(tmp_path / "bin", "git", tmp_path / "git-env")  # a git outside the workspace: trusted, records its env
    server = ScriptedServer([
        reply(ToolUse("t1", "write_file", {"path": "b.txt", "content": "b\n"}),
              ToolUse("t2", "bash", {"command": "cat /proc/$PPID/environ | tr '\\0' '\\n'; echo end-of-parent; "
                                                "env; echo end-of-env"})),
        reply(Text("done")),
    ])
    with server:
        done = midstream(repo, server, "--isolation", "none", PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}",
                         AWS_SECRET_ACCESS_KEY="aws-secret-value")
    assert done.returncode == 0, done.stderr
    assert server.requests[0]["headers"].get("x-api-key") == KEY  # the client still has it
    results = str(server.requests[1]["body"]["messages"][-1])
    assert "end-of-parent" in results and "end-of-env" in results, results
    assert KEY not in results  # not in midstream's /proc/PID/environ, not in the command's environment
    assert "aws-secret-value" not in results.split("end-of-parent")[1]  # other credentials: not the command's
    seen = (tmp_path / "git-env-git").read_text()  # midstream's own git ran, and saw no credential
    assert KEY not in seen and "aws-secret-value" not in seen and "ANTHROPIC_API_KEY" not in seen
