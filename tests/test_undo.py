"""Every turn undoable: snapshots before writing calls, /undo and --undo, the person's git state untouched."""

from __future__ import annotations

import functools
import os
import stat
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from midstream.sandbox.snapshots import TurnSnapshots
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import git, program_env
from tests.helpers import spawn as _spawn

pytestmark = pytest.mark.process


def files(workspace: Path) -> dict[str, tuple[int, bytes]]:
    """Every path outside .git: its mode and its bytes (a link's target)."""
    found: dict[str, tuple[int, bytes]] = {}
    for directory, dirs, names in os.walk(workspace):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in [*names, *dirs]:
            path = Path(directory, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path).encode()
            elif stat.S_ISDIR(info.st_mode):
                content = b"<dir>"
            else:
                content = path.read_bytes()
            found[str(path.relative_to(workspace))] = (info.st_mode, content)
    return found


def git_state(workspace: Path) -> dict[str, str | bytes]:
    """What the person sees of git: status, stash, branches, every ref and reflog, and the index itself."""
    logs = workspace / ".git" / "logs"
    return {
        "status": git(workspace, "status", "--porcelain=v1", "--untracked-files=all"),
        "stash": git(workspace, "stash", "list"),
        "branches": git(workspace, "branch", "-a", "-v"),
        "refs": git(workspace, "for-each-ref"),
        "reflogs": "".join(p.read_text() for p in sorted(logs.rglob("*")) if p.is_file()),
        "index": (workspace / ".git" / "index").read_bytes(),
    }


def make_repository(workspace: Path) -> None:
    """Committed files, a staged change, an unstaged one, an untracked file, a stash entry, another branch."""
    git(workspace, "init", "-q", "-b", "main")
    (workspace / "a.txt").write_text("alpha\n")
    (workspace / "b.txt").write_text("beta\nbeta again\n")
    (workspace / "d" / "deep").mkdir(parents=True)
    (workspace / "d" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (workspace / "d" / "run.sh").chmod(0o755)
    (workspace / "d" / "deep" / "data.bin").write_bytes(bytes(range(256)) * 4)
    (workspace / "d" / "link").symlink_to("run.sh")
    (workspace / "crlf.txt").write_bytes(b"windows\r\nline\r\n")
    (workspace / ".gitattributes").write_text("*.txt text eol=lf\n")  # a filter that would change bytes
    git(workspace, "add", "-A")
    git(workspace, "commit", "-qm", "init")
    git(workspace, "branch", "feature")
    (workspace / "stashed.txt").write_text("stash me\n")
    git(workspace, "add", "stashed.txt")
    git(workspace, "stash")
    (workspace / "a.txt").write_text("alpha, edited by the person\n")
    (workspace / "staged.txt").write_text("staged\n")
    git(workspace, "add", "staged.txt")
    (workspace / "untracked.txt").write_text("untracked\n")


spawn = functools.partial(_spawn, mode="auto", grace="0", timeout=30)


THE_TURN = [
    reply(ToolUse("t1", "edit_file", {"path": "a.txt", "old_string": "edited", "new_string": "changed"}),
          ToolUse("t2", "bash", {"command": "sed -i s/beta/BETA/ b.txt"})),
    reply(ToolUse("t3", "bash", {"command": "rm -rf d"}),
          ToolUse("t4", "write_file", {"path": "new/file.txt", "content": "brand new\n"})),
    reply(Text("Done.")),
]


def test_undo_at_the_prompt_restores_the_turn_to_the_byte_and_leaves_git_alone(workspace):
    make_repository(workspace)
    before_files, before_git = files(workspace), git_state(workspace)
    server = ScriptedServer([*THE_TURN, reply(Text("Understood."))])
    with server:
        child = spawn(server, workspace)
        child.expect("› ")
        child.sendline("change things")
        child.expect("Done.")
        child.expect("› ")
        assert not (workspace / "d").exists() and (workspace / "new" / "file.txt").exists()
        assert "BETA" in (workspace / "b.txt").read_text()
        assert git_state(workspace) | {"status": ""} == before_git | {"status": ""}  # the turn's own changes aside
        child.sendline("/undo")
        child.expect("Undid turn 1")
        child.expect("› ")
        assert files(workspace) == before_files
        assert git_state(workspace) == before_git
        child.sendline("what did you change?")
        child.expect("Understood.")
        child.expect("› ")
        child.sendeof()
        child.expect(pexpect.EOF)
    note = server.requests[-1]["body"]["messages"][-1]["content"][0]["text"]
    assert note.startswith("[The person undid turn 1 (/undo)")
    for path in ("a.txt", "b.txt", "d/run.sh", "d/link", "new/file.txt"):
        assert path in note


def test_undo_goes_back_turn_by_turn_and_tells_the_model_once(make_agent, workspace):
    (workspace / "f.txt").write_text("0\n")
    server = ScriptedServer([
        reply(ToolUse("t1", "bash", {"command": "echo 1 > f.txt"})), reply(Text("one")),
        reply(ToolUse("t2", "write_file", {"path": "f.txt", "content": "2\n"})), reply(Text("two")),
        reply(Text("three")), reply(Text("four")),
    ])
    with server:
        agent, _ = make_agent(server, isolation="none", grace_seconds=0)
        agent.send("one")
        agent.send("two")
        assert (workspace / "f.txt").read_text() == "2\n"
        second = agent.undo.undo()
        assert second.undone and second.files == [("reverted", "f.txt")]
        assert (workspace / "f.txt").read_text() == "1\n"
        first = agent.undo.undo()
        assert first.undone and (workspace / "f.txt").read_text() == "0\n"
        assert not agent.undo.undo().undone  # nothing left
        agent.send("three")
        agent.send("four")
    (told,) = [b["text"] for b in server.requests[4]["body"]["messages"][-1]["content"] if "undid" in b.get("text", "")]
    assert told.startswith("[The person undid turn 2 (/undo)") and "\n[The person undid turn 1 (/undo)" in told
    assert all("undid" not in str(b) for b in server.requests[5]["body"]["messages"][-1]["content"])


def test_undo_leaves_alone_what_the_turn_did_not_touch(make_agent, workspace):
    (workspace / "mine.txt").write_text("the person's\n")
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "echo new > made.txt"})), reply(Text("ok"))])
    with server:
        agent, _ = make_agent(server, isolation="none")
        agent.send("go")
    (workspace / "mine.txt").write_text("edited by the person after the turn\n")
    report = agent.undo.undo()
    assert report.files == [("removed", "made.txt")]
    assert (workspace / "mine.txt").read_text() == "edited by the person after the turn\n"


def test_midstream_undo_from_the_command_line(workspace):
    (workspace / "keep.txt").write_text("keep\n")
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "rm -f keep.txt; mkdir -p x; echo y > x/y"})),
                             reply(Text("ok")), reply(Text("noted"))])
    env = program_env() | {"ANTHROPIC_BASE_URL": server.url}
    run = [sys.executable, "-m", "midstream", "--isolation", "none", "--mode", "auto", "--grace", "0"]
    with server:
        subprocess.run([*run, "-p", "go"], cwd=workspace, env=env, check=True, capture_output=True)
        assert not (workspace / "keep.txt").exists()
        done = subprocess.run([*run, "--undo"], cwd=workspace, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "restored keep.txt" in done.stderr and "removed x/y" in done.stderr
        assert (workspace / "keep.txt").read_text() == "keep\n" and not (workspace / "x").exists()
        again = subprocess.run([*run, "--undo"], cwd=workspace, env=env, capture_output=True, text=True)
        assert again.returncode == 1 and "Nothing to undo" in again.stderr
        subprocess.run([*run, "--continue", "-p", "and now?"], cwd=workspace, env=env, check=True, capture_output=True)
    assert "undid turn 1" in server.requests[-1]["body"]["messages"][-1]["content"][0]["text"]


def test_a_hostile_repository_config_runs_nothing_and_huge_files_are_skipped(workspace, tmp_path):
    git(workspace, "init", "-q")
    marker = tmp_path / "ran"
    hook = tmp_path / "evil.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    for key in ("core.fsmonitor", "core.pager", "diff.external", "filter.evil.clean", "filter.evil.smudge"):
        git(workspace, "config", key, str(hook))
    (workspace / ".gitattributes").write_text("* filter=evil\n")
    (workspace / "small.txt").write_text("small\n")
    (workspace / "huge.bin").write_bytes(b"\0" * (11 * 1024 * 1024))
    snapshots = TurnSnapshots(workspace, "s")
    snapshots.before_call()
    (workspace / "small.txt").write_text("changed\n")
    (workspace / "huge.bin").write_bytes(b"\1" * 10)
    snapshots.end_turn()
    report = snapshots.undo()
    assert not marker.exists()
    assert (workspace / "small.txt").read_text() == "small\n"
    assert report.files == [("reverted", "small.txt")]  # huge.bin was never in a snapshot: not touched
    assert "untracked files over 10 MB" in report.message


def test_undo_never_writes_through_a_link_the_turn_planted(workspace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace / "d").mkdir()
    (workspace / "d" / "f").write_text("inside\n")
    snapshots = TurnSnapshots(workspace, "s")
    snapshots.before_call()
    subprocess.run("rm -rf d && ln -s " + str(outside) + " d", shell=True, cwd=workspace, check=True)
    snapshots.end_turn()
    snapshots.undo()
    assert not (workspace / "d").is_symlink() and (workspace / "d" / "f").read_text() == "inside\n"
    assert list(outside.iterdir()) == []


def test_undo_never_writes_through_a_hard_link_the_turn_made(workspace, tmp_path):
    elsewhere = workspace.parent / "elsewhere.txt"
    elsewhere.write_text("not the workspace's\n")
    (workspace / "a.txt").write_text("mine\n")
    snapshots = TurnSnapshots(workspace, "s")
    snapshots.before_call()
    (workspace / "a.txt").unlink()
    os.link(elsewhere, workspace / "a.txt")
    snapshots.end_turn()
    snapshots.undo()
    assert (workspace / "a.txt").read_text() == "mine\n"
    assert elsewhere.read_text() == "not the workspace's\n"


def test_a_snapshot_killed_half_way_does_not_spoil_the_next_one(workspace):
    (workspace / "a.txt").write_text("before\n")
    snapshots = TurnSnapshots(workspace, "s")
    snapshots.before_call()
    (snapshots.store.dir / "index.lock").write_text("")  # what a process killed inside `git add` leaves
    (workspace / "a.txt").write_text("after\n")
    snapshots.end_turn()
    (workspace / "a.txt").write_text("later\n")
    assert snapshots.undo().files == [("reverted", "a.txt")]
    assert (workspace / "a.txt").read_text() == "before\n"


def test_a_command_misread_as_read_only_is_still_undoable(make_agent, workspace):
    """The classifier is a speed bump, not the judge of what a command writes: `sed -n 'w notes.md'`
    and `git diff --output=FILE` read as read-only, yet overwrite a file. /undo must still cover them."""
    (workspace / "notes.md").write_text("the person's notes\n")
    (workspace / "in.txt").write_text("model text\n")
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "sed -n 'w notes.md' in.txt"})),
                             reply(Text("ok"))])
    with server:
        agent, _ = make_agent(server, isolation="none", grace_seconds=0)
        agent.send("go")
    assert (workspace / "notes.md").read_text() == "model text\n"
    report = agent.undo.undo()
    assert report.undone and report.files == [("reverted", "notes.md")]
    assert (workspace / "notes.md").read_text() == "the person's notes\n"


def test_midstream_undo_skips_a_session_left_before_its_first_message(workspace):
    """`-c` skips a session opened and left without a message; `--undo` must pick the same session."""
    (workspace / "keep.txt").write_text("keep\n")
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "rm -f keep.txt"})), reply(Text("ok"))])
    env = program_env() | {"ANTHROPIC_BASE_URL": server.url}
    run = [sys.executable, "-m", "midstream", "--isolation", "none", "--mode", "auto", "--grace", "0"]
    with server:
        subprocess.run([*run, "-p", "go"], cwd=workspace, env=env, check=True, capture_output=True)
        child = spawn(server, workspace)  # a look at the prompt, then Ctrl-D: a session with no conversation
        child.expect("› ")
        child.sendeof()
        child.expect(pexpect.EOF)
        child.close()
        done = subprocess.run([*run, "--undo"], cwd=workspace, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (workspace / "keep.txt").read_text() == "keep\n"
