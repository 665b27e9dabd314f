"""File and search tools against a hostile workspace: swapped symlinks, FIFOs, huge lines, evil regexes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
from midstream.sandbox.journal import UndoJournal
from midstream.tools import search
from midstream.tools.files import edit_file, read_file, write_file
from midstream.tools.registry import ToolContext

SWAPPER = textwrap.dedent("""
    import os, sys, time
    workspace, outside, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    d, real = os.path.join(workspace, "d"), os.path.join(workspace, "d_real")
    end = time.monotonic() + seconds
    print("ready", flush=True)
    strays = 0

    def put_back():  # a tool made d/ (write_file creates parents) while ours was away: move it aside
        global strays
        while os.path.islink(d) or os.path.lexists(real):
            try:
                if os.path.islink(d):
                    os.unlink(d)
                elif os.path.isdir(d):
                    strays += 1
                    os.rename(d, os.path.join(workspace, f"stray{strays}"))
                else:
                    os.rename(real, d)
            except OSError:
                pass  # the tools raced us again: look again

    while time.monotonic() < end:
        try:
            os.rename(d, real)
            os.symlink(outside, d)
            os.unlink(d)
            os.rename(real, d)
            time.sleep(0.0005)  # a moment with the tree in place, so the tools also get work done under load
        except OSError:
            put_back()
    put_back()
""")




def _outside_state(outside: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in outside.iterdir()}


@pytest.mark.process
def test_swapping_a_directory_for_a_symlink_never_leads_a_tool_outside(workspace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("f.txt", "new.txt", "g.txt"):
        (outside / name).write_text("OUTSIDE\n")
    before = _outside_state(outside)
    inside = workspace / "d"
    inside.mkdir()
    (inside / "f.txt").write_text("inside\n")
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(workspace), str(outside), "3"],
                               stdout=subprocess.PIPE, text=True)
    assert swapper.stdout is not None and swapper.stdout.readline() == "ready\n"
    reads = outside_reads = writes = restores = 0
    try:
        while swapper.poll() is None:
            journal = UndoJournal()
            ctx = ToolContext(workspace, before_write=journal.record)
            result = read_file.run(ctx, {"path": "d/f.txt"})
            reads += not result.is_error
            outside_reads += "OUTSIDE" in result.content
            writes += not write_file.run(ctx, {"path": "d/new.txt", "content": "written\n"}).is_error
            writes += not write_file.run(ctx, {"path": "d/g.txt", "content": "written\n"}).is_error
            edit_file.run(ctx, {"path": "d/f.txt", "old_string": "inside", "new_string": "edited"})
            restores += len(journal.rollback())
    finally:
        swapper.wait(10)
        swapper.stdout.close()
    assert swapper.returncode == 0
    assert outside_reads == 0
    assert _outside_state(outside) == before  # nothing written, created, restored or deleted outside
    assert reads > 0 and writes > 0 and restores > 0  # the tools did work while the tree was moving
    # f.txt is in d/ or, where a tool recreated d/ while it was swapped out, in a stray copy of it
    assert {p.read_text() for p in workspace.glob("*/f.txt")} <= {"inside\n", "edited\n"}


def test_rollback_after_a_swap_touches_nothing_outside(workspace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "new.txt").write_text("OUTSIDE\n")
    (outside / "old.txt").write_text("OUTSIDE\n")
    (workspace / "d").mkdir()
    (workspace / "d" / "old.txt").write_text("before\n")
    journal = UndoJournal()
    ctx = ToolContext(workspace, before_write=journal.record)
    assert not write_file.run(ctx, {"path": "d/new.txt", "content": "x"}).is_error
    assert not write_file.run(ctx, {"path": "d/old.txt", "content": "after\n"}).is_error
    (workspace / "d").rename(workspace / "moved")
    (workspace / "d").symlink_to(outside)  # a command swapped the directory after the writes
    assert journal.rollback() == []
    assert _outside_state(outside) == {"new.txt": b"OUTSIDE\n", "old.txt": b"OUTSIDE\n"}


@pytest.mark.parametrize("make", ["fifo", "socket", "device"])
def test_special_files_are_refused_not_opened(workspace, make):
    target = workspace / "special"
    server = None
    if make == "fifo":
        os.mkfifo(target)
    elif make == "socket":
        import socket

        server = socket.socket(socket.AF_UNIX)
        server.bind(str(target))
    else:
        target.symlink_to("/dev/zero")  # a link to a device inside the workspace's view
        target = workspace / "dev"
        os.mknod(target, 0o600 | 0o020000, os.makedev(1, 5))  # /dev/zero's numbers, as root can
    ctx = ToolContext(workspace)
    for tool, args in ((read_file, {"path": target.name}),
                       (edit_file, {"path": target.name, "old_string": "a", "new_string": "b"}),
                       (write_file, {"path": target.name, "content": "x"})):
        result = tool.run(ctx, args)
        assert result.is_error and "regular file" in result.content, (tool.name, result.content)
    assert search.grep.run(ctx, {"pattern": "x"}).content.startswith("No matches")
    assert search.grep.run(ctx, {"pattern": "x", "glob": "**/*"}).content.startswith("No matches")  # Python's walk
    if server is not None:
        server.close()


def test_a_huge_single_line_costs_what_the_result_costs(workspace):
    with (workspace / "one-line.txt").open("wb") as f:
        for _ in range(64):
            f.write(b"x" * (1 << 20))  # 64 MB, no newline
    tracemalloc.start()
    result = read_file.run(ToolContext(workspace), {"path": "one-line.txt"})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "line cut at" in result.content and len(result.content) < 10_000
    assert peak < 4 * (1 << 20)  # a few chunks, not the 64 MB line
    tracemalloc.start()
    found = search.grep.run(ToolContext(workspace), {"pattern": "x+"})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert found.content.startswith("1 matches") and peak < 4 * (1 << 20)


def test_a_catastrophic_pattern_cannot_hang_grep(workspace):
    (workspace / "sub").mkdir()
    (workspace / "sub" / "a.txt").write_text("a" * 5000 + "!\n")
    ctx = ToolContext(workspace)
    started = time.monotonic()
    # A path in the file glob sends grep to the Python fallback: RE2 there, linear time.
    fallback = search.grep.run(ctx, {"pattern": "(a+)+$", "glob": "sub/*.txt"})
    with_rg = search.grep.run(ctx, {"pattern": "(a|aa)*b"})
    backtracking_only = search.grep.run(ctx, {"pattern": r"(a)\1+(?=!)", "glob": "sub/*.txt"})
    assert fallback.content.startswith("No matches") and with_rg.content.startswith("No matches")
    assert backtracking_only.is_error and "backtracking" in backtracking_only.content
    assert time.monotonic() - started < 30  # a generous bound: backtracking would take longer than the universe


def test_ripgrep_is_the_one_installed_beside_python():
    assert search.ripgrep() == str(Path(sys.executable).parent / "rg")


def test_file_tools_cannot_write_what_the_sandbox_protects(workspace):
    (workspace / "vendor" / "lib" / ".git").mkdir(parents=True)
    ctx = ToolContext(workspace)
    for path in (".git/config", "vendor/lib/.git/config", ".gitmodules", ".midstream/settings.json"):
        result = write_file.run(ctx, {"path": path, "content": "[core]\n\tfsmonitor = evil\n"})
        assert result.is_error and "policy boundary" in result.content, path
    assert not (workspace / ".gitmodules").exists() and not (workspace / ".midstream").exists()
    assert not (workspace / "vendor" / "lib" / ".git" / "config").exists()


def test_a_fifo_named_gitignore_does_not_hang_listing(workspace):
    """A hostile checkout's .gitignore that is a FIFO: opening it to read the rules would wait forever."""
    import threading

    os.mkfifo(workspace / ".gitignore")
    (workspace / "a.py").write_text("x\n")
    results = []
    worker = threading.Thread(target=lambda: results.append(search.list_dir.run(ToolContext(workspace), {})),
                              daemon=True)
    worker.start()
    worker.join(20)  # a hang detector, not a timing bound: it answers at once or never
    assert not worker.is_alive()
    assert "a.py" in results[0].content
