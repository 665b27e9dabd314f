"""A SIGTERM while the main thread starts a child waits until the child is held, then exits."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from midstream.tools.signals import exit_on_signal, leave, starting_child


@pytest.fixture
def sigterm_exits():
    before = signal.signal(signal.SIGTERM, exit_on_signal)
    yield
    signal.signal(signal.SIGTERM, before)


def test_a_sigterm_while_starting_a_child_is_raised_when_the_start_is_over(sigterm_exits):
    started = []
    with pytest.raises(SystemExit) as exited:
        with starting_child():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at once, here: it must not raise yet
            started.append("the child is ours")  # (Popen returning, its result assigned)
    assert started == ["the child is ours"] and exited.value.code == 128 + signal.SIGTERM
    with pytest.raises(SystemExit):  # outside a start, as before: at once
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(1)


def test_nested_starts_raise_once_at_the_outermost_end(sigterm_exits):
    with pytest.raises(SystemExit):
        with starting_child():
            with starting_child():
                os.kill(os.getpid(), signal.SIGTERM)
            reached = True  # the inner end does not raise: the outer start is not over
    assert reached


def test_ctrl_c_while_starting_a_child_waits_too_and_the_first_signal_wins():
    with pytest.raises(KeyboardInterrupt):
        with starting_child():
            leave(KeyboardInterrupt())  # what Ctrl-C's handler does when it may raise
            leave(SystemExit(143))  # a SIGTERM after it
            assigned = True
    assert assigned


def test_other_threads_are_not_affected(sigterm_exits):
    done = []

    def worker() -> None:
        with starting_child():  # a no-op off the main thread: the signal is the main thread's
            done.append(True)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert done == [True]
