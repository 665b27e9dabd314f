"""A sandbox set up ahead of time, waiting for the next command: the overlay's set-up off the dispatch path.

Starting a transacted command costs three process starts (``unshare``, ``sh`` with two mounts, ``bwrap``)
before the command's own shell: about 5 ms over plain bubblewrap on these machines, more when loaded.
A ``Spare`` does all of that in advance, for a fresh layer, and leaves a waiter inside the sandbox
that reads the real command from a pipe and ``exec``s ``bash -c`` on it. Handing a command over is
then one write and one exec.

One spare waits per (workspace, network); it is made right after a transacted command ends (on the
tool's worker thread, which lives as long as the scheduler: bubblewrap's ``--die-with-parent`` follows
the thread that started it) and taken by the next command. A spare that waits more than
``MAX_AGE`` seconds is not used (its environment and protected-path list could be stale) but
replaced. What a spare's overlay sees of the workspace is the workspace at the moment of handover:
the overlay reads the lower layer on each lookup, and nothing was looked up while it waited.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from midstream.sandbox.isolation import command_environment, sandboxed
from midstream.sandbox.overlay import Layer, Store, overlay_argv

__all__ = ["Spare", "take_spare", "make_spare", "close_spares"]

MAX_AGE = 300.0
_WAITER = 'IFS= read -r -d "" -u {fd} c; exec {fd}<&-; exec bash -c "$c"'


@dataclass
class Spare:
    """A started sandbox over a fresh layer, waiting for its command on ``feed``."""

    process: subprocess.Popen[bytes]
    layer: Layer
    feed: int  # the pipe's write end
    made: float

    def hand_over(self, command: str) -> subprocess.Popen[bytes]:
        """Give the waiter its command; the process is then the command's."""
        try:
            os.write(self.feed, command.encode("utf-8", "surrogateescape") + b"\0")
        finally:
            os.close(self.feed)
        return self.process

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.feed)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.layer.remove()


_lock = threading.Lock()
_spares: dict[tuple[Path, bool], Spare] = {}


def make_spare(workspace: Path, store: Store, *, network: bool) -> None:
    """Start the next command's sandbox now, unless one already waits."""
    key = (workspace.resolve(), network)
    with _lock:
        if key in _spares:
            return
    layer = store.new_layer()
    read_end, write_end = os.pipe()
    os.set_inheritable(read_end, True)
    try:
        with sandboxed(["bash", "-c", _WAITER.format(fd=read_end)], key[0], "bwrap", writable=True,
                       network=network) as (argv, fds):
            process = subprocess.Popen(
                overlay_argv(argv, key[0], store, layer), cwd=key[0], env=command_environment(),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=(*fds, read_end))
    except BaseException:
        os.close(write_end)
        layer.remove()
        raise
    finally:
        os.close(read_end)
    spare = Spare(process, layer, write_end, time.monotonic())
    with _lock:
        if key in _spares:  # another thread was quicker
            spare.discard()
        else:
            _spares[key] = spare


def take_spare(workspace: Path, *, network: bool) -> Spare | None:
    """The waiting sandbox for this workspace, if one is ready and fresh; the caller owns it then."""
    with _lock:
        spare = _spares.pop((workspace.resolve(), network), None)
    if spare is None:
        return None
    if spare.process.poll() is not None or time.monotonic() - spare.made > MAX_AGE:
        spare.discard()
        return None
    return spare


def close_spares() -> None:
    """No waiting sandbox outlives midstream."""
    with _lock:
        spares = list(_spares.values())
        _spares.clear()
    for spare in spares:
        spare.discard()


atexit.register(close_spares)
