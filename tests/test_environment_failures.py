"""Every failure of the environment is one ``midstream:`` line, through the real program.

A state directory that is read-only (a read-only bind mount), full (a small tmpfs, filled), or a
file; a workspace whose name is not UTF-8; Ctrl-C at every moment of start-up. The conversation
on disk stays as it was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from midstream.tools.testing.raw_server import RawServer, Script, reply_bytes
from midstream.tools.testing.scripted_server import Text, reply

from tests.helpers import midstream, program_env

pytestmark = pytest.mark.process

FAST = ["--isolation", "none", "--grace", "0"]


def _answers(*texts: str) -> Script:
    return Script([reply_bytes("anthropic", reply(Text(t))["events"]) for t in texts])


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("midstream:") and "warning:" not in line]
    assert len(lines) == 1, stderr
    return lines[0]


def _state(home: Path) -> Path:
    return Path(os.environ["XDG_STATE_HOME"]) / "midstream"


def _session_files() -> dict[Path, bytes]:
    root = Path(os.environ["XDG_STATE_HOME"]) / "midstream" / "sessions"
    return {p: p.read_bytes() for p in root.glob("*/*.jsonl")}


def _in_bwrap(mounts: list[str], args: list[str], workspace: Path, url: str,
              before: str = "") -> subprocess.CompletedProcess:
    """The program inside a mount namespace that changes only the state directory."""
    command = " ".join(f"'{a}'" for a in [sys.executable, "-m", "midstream", *FAST, *args])
    script = f"{before}\n{command}; status=$?; exit $status"
    return subprocess.run(["bwrap", "--dev-bind", "/", "/", *mounts, "sh", "-c", script], cwd=workspace,
                          env=program_env(ANTHROPIC_BASE_URL=url), capture_output=True, text=True, timeout=60)


def test_a_state_directory_that_is_a_file_is_one_line(workspace):
    state = _state(workspace)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text("not a directory")
    with RawServer(_answers("unused")) as server:
        done = midstream([*FAST, "-p", "hi"], workspace, {"ANTHROPIC_BASE_URL": server.url})
    assert done.returncode != 0
    line = _one_line(done.stderr)
    assert str(state) in line and "XDG_STATE_HOME" in line
    assert state.read_text() == "not a directory"


def test_a_read_only_state_directory_is_one_line_and_the_session_stays_as_it_was(workspace):
    with RawServer(_answers("first")) as server:
        assert midstream([*FAST, "-p", "hi"], workspace, {"ANTHROPIC_BASE_URL": server.url}).returncode == 0
    before = _session_files()
    state = _state(workspace)
    for args in (["--continue", "-p", "again"], ["-p", "a new one"]):
        with RawServer(_answers("unused")) as server:
            done = _in_bwrap(["--ro-bind", str(state), str(state)], args, workspace, server.url)
        assert done.returncode != 0
        line = _one_line(done.stderr)
        assert str(state) in line and ("read-only" in line.lower() or "Read-only" in line)
    assert _session_files() == before
    with RawServer(_answers("writable again")) as server:  # and once writable, the session goes on
        done = midstream([*FAST, "--continue", "-p", "again"], workspace, {"ANTHROPIC_BASE_URL": server.url})
    assert done.returncode == 0 and "writable again" in done.stdout, done.stderr


def test_a_full_state_directory_is_one_line_and_the_session_on_disk_stays_whole(workspace, tmp_path):
    with RawServer(_answers("first")) as server:
        assert midstream([*FAST, "-p", "hi"], workspace, {"ANTHROPIC_BASE_URL": server.url}).returncode == 0
    state = _state(workspace)
    saved = tmp_path / "saved"
    subprocess.run(["cp", "-a", str(state), str(saved)], check=True)
    (session,) = saved.glob("sessions/*/*.jsonl")
    after = tmp_path / "after.jsonl"
    fill = (f"cp -a '{saved}/.' '{state}/' && (dd if=/dev/zero of='{state}/filler' bs=4k 2>/dev/null; true)")
    copy_out = f"; cp '{state}/{session.relative_to(saved)}' '{after}'"
    with RawServer(_answers("unused")) as server:
        done = _in_bwrap(["--size", str(4 << 20), "--tmpfs", str(state)], ["--continue", "-p", "again " * 2000],
                         workspace, server.url, before=fill)
        subprocess.run(["bwrap", "--dev-bind", "/", "/", "--size", str(4 << 20), "--tmpfs", str(state), "sh", "-c",
                        fill + copy_out], check=True)
    assert done.returncode != 0
    line = _one_line(done.stderr)
    assert str(state) in line and "space" in line.lower()
    assert after.read_bytes() == session.read_bytes()  # nothing half-written


def test_a_workspace_whose_name_is_not_utf8_works_and_continues(tmp_path):
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9-\xff"))
    odd.mkdir()
    for turn in range(3):
        with RawServer(_answers(f"answer {turn}")) as server:
            done = midstream([*FAST, *(["--continue"] if turn else []), "-p", f"hi {turn}"], odd,
                             {"ANTHROPIC_BASE_URL": server.url})
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == 0 and f"answer {turn}" in done.stdout, done.stderr
        if turn:
            assert f"hi {turn - 1}" in server.requests[0].raw.decode()


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6])
def test_ctrl_c_at_any_moment_of_start_up_exits_130_quietly(workspace, delay):
    with RawServer(_answers("done")) as server:
        process = subprocess.Popen([sys.executable, "-m", "midstream", *FAST, "-p", "hi"], cwd=workspace,
                                   env=program_env(ANTHROPIC_BASE_URL=server.url), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    if "init_import_site" in err:  # Python's own start-up (site, .pth files): before any of our code runs
        assert not [line for line in err.splitlines() if "/midstream/" in line or "tools/" in line], err
        return
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    # 130: our handler; -SIGINT: the default one, before Python had set any (shells show both as 130);
    # 0: it had already finished.
    assert process.returncode in (130, -signal.SIGINT, 0), (process.returncode, err)
    if process.returncode == 0:
        assert "done" in out
