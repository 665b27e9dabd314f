"""Attacks on start-up's deferred work (tools/startup.py): what waits must never change what is seen or kept."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import program_env

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
    for attempt in range(8):  # a race: several tries
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
