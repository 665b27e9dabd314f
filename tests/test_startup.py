"""Start-up work waits for the first request to be written, and is never lost when none is."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest
from midstream.tools.conversation.transcript import state_dir
from midstream.tools.startup import Later
from midstream.tools.testing.raw_server import RawServer, Script, reply_bytes
from midstream.tools.testing.scripted_server import Text, reply

from tests.helpers import program_env


def test_held_work_starts_on_release_and_later_work_at_once():
    later, ran = Later(), []
    first = later.run("first", lambda: ran.append("first"))
    assert ran == []  # held
    later.release()
    first.wait()
    assert ran == ["first"]
    later.run("second", lambda: ran.append("second")).wait()
    assert ran == ["first", "second"]
    later.release()  # twice: nothing runs again
    assert ran == ["first", "second"]


def test_waiting_for_held_work_starts_it():
    later, ran = Later(), threading.Event()
    later.run("held", ran.set).wait(5)  # the first request never went out: the exit still runs it
    assert ran.is_set()


def test_waiting_starts_only_that_job_and_a_cancelled_one_never_runs():
    later, ran = Later(), []
    waited = later.run("waited", lambda: ran.append("waited"))
    other = later.run("other", lambda: ran.append("other"))
    dropped = later.run("dropped", lambda: ran.append("dropped"))
    waited.wait(5)
    assert ran == ["waited"]  # the exit's log drain does not start undo's probes or the sandbox line
    dropped.cancel()
    later.release()
    other.wait(5)
    dropped.wait(0.1)  # waiting for a cancelled job returns: it is no longer held
    assert ran == ["waited", "other"]


def test_a_failing_job_is_logged_not_raised(caplog):
    later = Later()
    later.release()

    def broken() -> None:
        raise RuntimeError("disk on fire")

    later.run("broken", broken).wait(5)
    assert "start-up work 'broken' failed" in caplog.text and "disk on fire" in caplog.text


def test_waiting_while_another_thread_releases_never_fails():
    for _ in range(200):  # wait() and release() racing: a job is never joined before it is started
        later = Later()
        job = later.run("raced", lambda: None)
        other = threading.Thread(target=later.release)
        other.start()
        job.wait(5)
        other.join()


@pytest.mark.process
def test_the_log_is_written_when_the_first_request_goes_out_and_when_it_never_does(workspace):
    log = state_dir() / "logs" / "midstream.log"
    with RawServer(Script([reply_bytes("anthropic", reply(Text("ok"))["events"])])) as server:
        done = subprocess.run([sys.executable, "-m", "midstream", "-p", "hi", "--isolation", "none"], cwd=workspace,
                              env=program_env(ANTHROPIC_BASE_URL=server.url), capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 0, done.stderr
    assert "HTTP 200" in log.read_text()
    with socket.socket() as unused:  # a port nobody answers on: no request is ever written
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "midstream", "-p", "hi", "--isolation", "none",
                           "--max-attempts", "1"], cwd=workspace,
                          env=program_env(ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}"), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "cannot connect" in done.stderr
    assert f"127.0.0.1:{port}" in log.read_text()  # what was logged before the exit reached the file
