"""The smaller holes: a replay that is /dev/zero, a workspace that is /, .hg and .jj, nested repositories made later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from midstream.sandbox.isolation import bwrap_works
from midstream.sandbox.workspace import workspace_problem
from midstream.tools.registry import Decision, ToolContext
from midstream.tools.shell import bash

from tests.helpers import program_env

pytestmark = pytest.mark.process


def midstream(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "midstream", *args], cwd=cwd, env=program_env(),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_a_replay_whose_files_are_devices_or_huge_is_one_line_not_out_of_memory(tmp_path, workspace):
    recording = tmp_path / "rec"
    recording.mkdir()
    (recording / "0001.response.json").write_text('{"status": 200, "headers": {}, "ended": "complete"}')
    (recording / "0001.response.sse").symlink_to("/dev/zero")
    done = midstream(workspace, "-p", "hi", "--replay", str(recording))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "0001.response.sse is not a regular file" in done.stderr
    (recording / "0001.response.sse").unlink()
    with open(recording / "0001.response.sse", "wb") as big:
        big.truncate((256 << 20) + 1)  # sparse: costs no disk
    done = midstream(workspace, "-p", "hi", "--replay", "/dev/zero")
    assert done.returncode == 2 and "no recording in /dev/zero" in done.stderr, done.stderr
    done = midstream(workspace, "-p", "hi", "--replay", str(recording))
    assert done.returncode == 2 and "over the 256 MiB" in done.stderr, done.stderr


@pytest.mark.parametrize("where", ["/", "/usr"])
def test_a_system_directory_as_the_workspace_is_one_line(where, tmp_path):
    done = midstream(tmp_path, "-p", "hi", "--cwd", where)
    assert done.returncode == 2 and done.stderr.startswith(f"midstream: the workspace would be {where}, a system")
    assert done.stderr.count("\n") == 1


def test_a_workspace_over_the_file_limit_is_refused_and_one_under_it_is_not(tmp_path):
    for index in range(30):
        (tmp_path / f"f{index}").touch()
    (tmp_path / "node_modules").mkdir()
    for index in range(100):
        (tmp_path / "node_modules" / f"m{index}").touch()  # ignored directories do not count
    assert workspace_problem(tmp_path, limit=40) is None
    assert "holds more than 20 files" in workspace_problem(tmp_path / ".", limit=20)


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here (.ci/run installs it)")
def test_hg_and_jj_are_protected_and_a_nested_repository_made_by_one_command_is_by_the_next(workspace):
    (workspace / ".hg").mkdir()
    (workspace / ".hg" / "hgrc").write_text("[ui]\n")
    ctx = ToolContext(workspace, decision=Decision(isolation="bwrap"))

    def sh(command: str) -> str:
        return bash.run(ctx, {"command": command, "timeout": 60}).content

    out = sh("echo '[hooks]' >> .hg/hgrc; mkdir -p .jj/repo 2>&1; git init -q sub && echo made")
    assert (workspace / ".hg" / "hgrc").read_text() == "[ui]\n" and "Read-only file system" in out
    assert not (workspace / ".jj" / "repo").exists()
    assert "made" in out  # a nested repository may be created ...
    out = sh("git -C sub config core.fsmonitor 'touch /tmp/x' 2>&1; echo x > sub/.git/hooks/post-checkout 2>&1")
    assert out.count("Read-only file system") >= 1, out  # ... and from the next command on it is protected
    assert "fsmonitor" not in (workspace / "sub" / ".git" / "config").read_text()
    assert not (workspace / "sub" / ".git" / "hooks" / "post-checkout").exists()
    assert not os.path.exists(workspace / ".jj")  # the pin left nothing behind
