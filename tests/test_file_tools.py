"""File tools and workspace confinement, on real files in a temporary workspace."""

from __future__ import annotations

import os
import stat

import pytest
from midstream.tools.files import READ_MAX_LINES, edit_file, read_file, write_file

from tests.helpers import call


@pytest.fixture
def outside(tmp_path):
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "secret.txt").write_text("top secret\n")
    return secret


@pytest.mark.parametrize("path", [
    "../outside/secret.txt",
    "sub/../../outside/secret.txt",
    "{outside}/secret.txt",
    "link_file",
    "link_dir/secret.txt",
    "~/secret.txt",
    "~root/.bashrc",
    "ok\0.txt",
    "/etc/passwd",
])
@pytest.mark.parametrize("tool", ["read", "write", "edit"])
def test_every_escape_is_refused_as_a_policy_boundary(workspace, outside, path, tool):
    (workspace / "sub").mkdir()
    (workspace / "link_file").symlink_to(outside / "secret.txt")
    (workspace / "link_dir").symlink_to(outside)
    path = path.format(outside=outside)
    result = {
        "read": lambda: call(read_file, workspace, path=path),
        "write": lambda: call(write_file, workspace, path=path, content="pwned"),
        "edit": lambda: call(edit_file, workspace, path=path, old_string="top", new_string="pwned"),
    }[tool]()
    assert result.is_error
    assert "policy boundary" in result.content
    assert (outside / "secret.txt").read_text() == "top secret\n"


def test_writes_into_dot_git_are_refused_but_reads_are_not(workspace):
    (workspace / ".git").mkdir()
    (workspace / ".git" / "config").write_text("[core]\n")
    assert "policy boundary" in call(write_file, workspace, path=".git/config", content="x").content
    assert "policy boundary" in call(edit_file, workspace, path=".git/config", old_string="core",
                                     new_string="x").content
    assert not call(read_file, workspace, path=".git/config").is_error


def test_read_numbers_lines_and_pages(workspace):
    (workspace / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, READ_MAX_LINES + 501)))
    first = call(read_file, workspace, path="big.txt")
    assert first.content.startswith("     1\tline 1\n")
    assert f"offset={READ_MAX_LINES + 1}" in first.content
    rest = call(read_file, workspace, path="big.txt", offset=READ_MAX_LINES + 1)
    assert rest.content.startswith(f"{READ_MAX_LINES + 1:6}\tline {READ_MAX_LINES + 1}")
    assert "More follows" not in rest.content
    window = call(read_file, workspace, path="big.txt", offset=10, limit=2)
    assert window.content.splitlines()[:2] == ["    10\tline 10", "    11\tline 11"]


def test_read_caps_bytes_and_long_lines(workspace):
    (workspace / "wide.txt").write_text(("x" * 5000 + "\n") * 300)
    result = call(read_file, workspace, path="wide.txt")
    assert len(result.content) < 300 * 1024
    assert "line cut at 2000 characters" in result.content and "More follows" in result.content


def test_binary_missing_directory_and_empty_files_get_clear_messages(workspace):
    (workspace / "blob.bin").write_bytes(b"\x89PNG\0\0\x01" * 100)
    (workspace / "empty.txt").write_text("")
    (workspace / "dir").mkdir()
    assert "binary file (700 bytes)" in call(read_file, workspace, path="blob.bin").content
    assert "does not exist" in call(read_file, workspace, path="nope.txt").content
    assert "is a directory" in call(read_file, workspace, path="dir").content
    assert call(read_file, workspace, path="empty.txt").content == "empty.txt is empty."


def test_write_creates_parents_atomically_and_keeps_the_mode(workspace):
    result = call(write_file, workspace, path="a/b/new.sh", content="#!/bin/sh\necho hi\n")
    assert result.content == "Created a/b/new.sh: 2 lines (18 bytes)."
    script = workspace / "a/b/new.sh"
    script.chmod(0o755)
    again = call(write_file, workspace, path="a/b/new.sh", content="#!/bin/sh\necho bye\n")
    assert again.content.startswith("Overwrote a/b/new.sh")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert script.read_text() == "#!/bin/sh\necho bye\n"
    assert [p.name for p in script.parent.iterdir()] == ["new.sh"]  # no temporary files left


def test_edit_replaces_once_and_returns_a_diff(workspace):
    (workspace / "app.py").write_text("def f():\n    return 1\n\ndef g():\n    return 2\n")
    result = call(edit_file, workspace, path="app.py", old_string="return 2", new_string="return 3")
    assert not result.is_error
    assert "-    return 2" in result.content and "+    return 3" in result.content
    assert (workspace / "app.py").read_text().endswith("return 3\n")


@pytest.mark.parametrize("old, new, replace_all, expected", [
    ("missing text", "x", False, "was not found"),
    ("return", "x", False, "occurs 2 times in app.py (lines 2, 5)"),
    ("return 1", "return 1", False, "the same"),
    ("", "x", False, "old_string is empty"),
    ("def  f():", "x", False, "apart from whitespace"),
])
def test_edit_failures_leave_the_file_untouched(workspace, old, new, replace_all, expected):
    original = "def f():\n    return 1\n\ndef g():\n    return 2\n"
    (workspace / "app.py").write_text(original)
    before = os.stat(workspace / "app.py").st_mtime_ns
    result = call(edit_file, workspace, path="app.py", old_string=old, new_string=new, replace_all=replace_all)
    assert result.is_error and expected in result.content
    assert (workspace / "app.py").read_text() == original
    assert os.stat(workspace / "app.py").st_mtime_ns == before


def test_edit_replace_all_and_crlf_files(workspace):
    (workspace / "win.txt").write_bytes(b"a = 1\r\nb = 1\r\n")
    result = call(edit_file, workspace, path="win.txt", old_string="= 1\nb", new_string="= 2\nb")
    assert not result.is_error
    assert (workspace / "win.txt").read_bytes() == b"a = 2\r\nb = 1\r\n"
    result = call(edit_file, workspace, path="win.txt", old_string="=", new_string=":", replace_all=True)
    assert "2 occurrences" in result.content
    assert (workspace / "win.txt").read_bytes() == b"a : 2\r\nb : 1\r\n"


def test_edit_of_a_binary_or_missing_file_is_refused(workspace):
    (workspace / "blob.bin").write_bytes(b"abc\0def")
    assert "binary" in call(edit_file, workspace, path="blob.bin", old_string="abc", new_string="x").content
    assert "write_file" in call(edit_file, workspace, path="nope.py", old_string="a", new_string="b").content
    assert (workspace / "blob.bin").read_bytes() == b"abc\0def"
