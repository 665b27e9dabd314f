"""How a person stops things: Ctrl-C and Esc reach the loop at known points; SIGTERM and SIGHUP exit.

Ctrl-C is a signal (the kernel sends SIGINT to the foreground group); Esc is a byte that
tools/cli/typeahead.py reads keys during a turn and turns Esc into ``interrupt_turn``, the first Ctrl-C's effect.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

from midstream.agent import Agent
from midstream.tools.signals import exit_on_signal, leave

__all__ = ["install_signals", "interrupt_turn"]


def interrupt_turn(agent: Agent) -> None:
    """Esc: the first Ctrl-C's effect (stop the stream and the tools), never the second's (leave)."""
    if agent.busy and not agent.interrupting:
        agent.interrupting = True
        agent.abort_stream()


def install_signals(agent: Agent, idle_raises: Callable[[], bool] = lambda: True) -> None:
    """SIGTERM and SIGHUP (the terminal closed) unwind like an exit, so the agent's close() stops
    its tools; Ctrl-C goes to the loop (see _install_interrupts)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, exit_on_signal)  # tools/signals.py: never in the middle of starting a child
    _install_interrupts(agent, idle_raises)


def _install_interrupts(agent: Agent, idle_raises: Callable[[], bool]) -> None:
    """Route Ctrl-C to the loop at known points only (see agent.py, step 5).

    Outside a turn it raises only where ``idle_raises()`` says something waits for the person (the
    prompt, a `!command`); in the instants between, a press is dropped rather than ending the
    session with a stray KeyboardInterrupt. During a turn the first press sets ``interrupting`` and
    raises only if the loop is blocked reading the stream; the second kills the running tools.
    The kernel may deliver SIGINT to any thread, and Python runs the handler on the main thread
    only once it gets back to bytecode, so a watcher woken through the signal wakeup fd shuts the
    stream's socket down to wake a main thread blocked in recv(). Esc (typeahead.py) takes the same
    path without the signal: it sets ``interrupting`` and shuts the socket down itself.
    """

    def on_sigint(signum: int, frame: object) -> None:
        if not agent.busy:
            if idle_raises():
                leave(KeyboardInterrupt())  # (tools/signals.py: never in the middle of starting a hook)
            return
        if agent.interrupting:
            agent.hurry()
            return
        agent.interrupting = True
        if agent.interruptible:
            leave(KeyboardInterrupt())

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, on_sigint)

    def watch() -> None:
        while data := os.read(read_end, 64):
            if signal.SIGINT in data and agent.busy:
                agent.abort_stream()

    threading.Thread(target=watch, name="interrupt-watcher", daemon=True).start()
