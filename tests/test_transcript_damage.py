"""A damaged transcript never stops a session, through the real program.

Bad bytes, records of the wrong shape, a session file that is not a file: what cannot be read is
skipped and reported once, the rest is resumed, and the listing of sessions never fails because of
one file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from midstream.tools.conversation.history import history_problems
from midstream.tools.conversation.transcript import state_dir
from midstream.tools.testing.raw_server import RawServer, Script, reply_bytes
from midstream.tools.testing.scripted_server import Text, reply

from tests.helpers import midstream

pytestmark = pytest.mark.process

FAST = ["--isolation", "none", "--grace", "0"]


def _turn(workspace: Path, *args: str, answer: str = "ok"):
    with RawServer(Script([reply_bytes("anthropic", reply(Text(answer))["events"])])) as server:
        done = midstream([*FAST, *args], workspace, {"ANTHROPIC_BASE_URL": server.url})
    for request in server.requests:
        assert history_problems(request.body["messages"]) == []
    return done, server


def _session_file() -> Path:
    (path,) = (state_dir() / "sessions").glob("*/*.jsonl")
    return path


DAMAGE = {
    "bytes that are not UTF-8": b'{"type": "message", "message": {"role": "user", "content": "caf\xe9 \xff\xfe"}}\n',
    "a line that is not JSON at all": b"\x00\x01garbage\xff\n",
    "content that is a number": b'{"type": "message", "message": {"role": "user", "content": 5}}\n',
    "a message that is a list": b'{"type": "message", "message": ["user", "hi"]}\n',
    "a record that is a number": b"42\n",
    "a role that is not a role": b'{"type": "message", "message": {"role": 7, "content": "x"}}\n',
    "blocks that are not objects": b'{"type": "message", "message": {"role": "user", "content": [1, "two", null]}}\n',
    "a compaction whose messages are text": b'{"type": "compaction", "messages": "everything"}\n',
    "cleared notes that are a list": b'{"type": "cleared", "notes": ["a"]}\n',
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_line_is_skipped_reported_once_and_the_session_continues(workspace, damage):
    done, _ = _turn(workspace, "-p", "remember the word apple", answer="apple noted")
    assert done.returncode == 0, done.stderr
    with _session_file().open("ab") as session:
        session.write(DAMAGE[damage])
    reports = []
    for turn in range(3):
        done, server = _turn(workspace, "--continue", "-p", f"what word? {turn}", answer=f"apple {turn}")
        assert done.returncode == 0 and f"apple {turn}" in done.stdout, done.stderr
        assert "Traceback" not in done.stderr
        sent = json.dumps(server.requests[0].body["messages"])
        assert "remember the word apple" in sent  # the readable part is resumed
        reports.append([line for line in done.stderr.splitlines() if "could not be read" in line])
    assert len(reports[0]) == 1 and reports[1:] == [[], []], reports  # reported once, then never again
    assert str(_session_file().name.removesuffix(".jsonl")) in reports[0][0]


def test_the_listing_never_fails_because_of_one_file(workspace):
    done, _ = _turn(workspace, "-p", "the good session")
    assert done.returncode == 0
    directory = _session_file().parent
    (directory / "20000101-000000-bad001.jsonl").write_bytes(b"\xff\xfe\x00 not a transcript\n" + DAMAGE[
        "a message that is a list"])
    (directory / "20000101-000000-bad002.jsonl").mkdir()  # not even a file
    (directory / "20000101-000000-bad003.jsonl").symlink_to(directory / "nowhere.jsonl")
    listed = midstream(["--resume"], workspace, {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    assert listed.returncode == 0, listed.stderr
    assert "the good session" in listed.stdout and "Traceback" not in listed.stderr
    done, _ = _turn(workspace, "--continue", "-p", "still here?", answer="yes")
    assert done.returncode == 0 and "yes" in done.stdout, done.stderr


def test_resuming_a_session_file_that_is_not_a_file_is_one_line(workspace):
    done, _ = _turn(workspace, "-p", "hello")
    directory = _session_file().parent
    (directory / "20990101-000000-dir001.jsonl").mkdir()
    done = midstream([*FAST, "--resume", "20990101-000000-dir001", "-p", "x"], workspace,
                     {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("midstream:") and "warning" not in line]
    assert "20990101-000000-dir001" in line
