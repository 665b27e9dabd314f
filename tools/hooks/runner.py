"""One hook command, run: JSON on stdin, an allowlisted environment, a timeout, and a way to stop it.

The command runs through ``bash -c`` (``sh`` where there is no bash), as Claude Code runs it, in
the workspace, in a process session of its own, so a timeout or Esc / Ctrl-C ends its whole group.
Its environment is the sandbox's allowlist (never the model service's keys) plus
``CLAUDE_PROJECT_DIR`` and ``MIDSTREAM_PROJECT_DIR``. A project hook runs inside the sandbox
(sandbox/isolation.py), without the network; the person's own hooks run as the person.

How a run ended is a fact of the result (``ended``): ``exited`` (with its status), ``timeout``,
``stopped`` (the person interrupted), or ``not_started``: the shell could not find or execute the
command, or the sandbox could not be set up. A command that cannot start is a configuration error,
never an answer.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from midstream.tools.hooks.config import HookCommand
from midstream.tools.signals import starting_child

__all__ = ["OUTPUT_LIMIT", "HookRun", "hook_environment", "run_hook"]

OUTPUT_LIMIT = 1024 * 1024  # bytes of stdout and of stderr kept; the rest is counted, not held
_NOT_FOUND = ("command not found", "No such file or directory", "Permission denied", "cannot execute",
              "not found")


@dataclass(frozen=True)
class HookRun:
    """What one hook command did."""

    hook: HookCommand
    ended: str  # exited | timeout | stopped | not_started
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    problem: str = ""  # why it could not start

    @property
    def blocked(self) -> bool:
        """Exit status 2: Claude Code's "block", whatever the event makes of it."""
        return self.ended == "exited" and self.exit_code == 2

    @property
    def succeeded(self) -> bool:
        return self.ended == "exited" and self.exit_code == 0

    @property
    def failed(self) -> bool:
        """Neither success nor a block: a failure, shown to the person (and blocking if fail-closed)."""
        return not (self.succeeded or self.blocked or self.ended == "stopped")

    def failure(self) -> str:
        """The person's one line about a failed run."""
        said = _last_line(self.stderr) or _last_line(self.stdout)
        match self.ended:
            case "not_started":
                return (f"{self.hook.label()} could not start: {self.problem} — a configuration error in "
                        f"{self.hook.where}; fix or remove the hook")
            case "timeout":
                return f"{self.hook.label()} timed out after {self.hook.timeout:g} s and was stopped"
            case _:
                return f"{self.hook.label()} failed with exit status {self.exit_code}" + (f": {said}" if said else "")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


@functools.cache
def _shell() -> str:
    """bash, resolved once to an absolute path outside any workspace; sh where there is none."""
    for candidate in ("/bin/bash", "/usr/bin/bash"):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("bash", path=os.defpath) or "/bin/sh"


def hook_environment(workspace: Path) -> dict[str, str]:
    """The allowlisted environment of every command, plus where the project is (as Claude Code sets it)."""
    from midstream.sandbox.isolation import command_environment

    env = command_environment()
    root = str(workspace.resolve())
    env.update(CLAUDE_PROJECT_DIR=root, MIDSTREAM_PROJECT_DIR=root)
    return env


def run_hook(hook: HookCommand, payload: dict[str, Any], workspace: Path, *, isolation: str = "auto",
             writable: bool = True, cancelled: threading.Event | None = None) -> HookRun:
    """Run one hook with ``payload`` as JSON on stdin, to its end, its timeout or ``cancelled``."""
    from midstream.sandbox.isolation import IsolationUnavailable, sandboxed

    started = time.monotonic()
    data = json.dumps(payload, ensure_ascii=False).encode()
    argv = [_shell(), "-c", hook.command]
    mode = isolation if hook.project else "none"
    try:
        with sandboxed(argv, workspace, mode, writable=writable, network=False) as (full, fds):
            run = _run(hook, full, fds, data, workspace, cancelled or threading.Event(), started)
    except IsolationUnavailable as error:
        return HookRun(hook, "not_started", problem=str(error), seconds=time.monotonic() - started)
    if run.ended == "exited" and run.exit_code != 0 and (problem := _not_started(run, sandboxed_run=full != argv)):
        return HookRun(hook, "not_started", run.exit_code, run.stdout, run.stderr, run.seconds, problem)
    return run


def _not_started(run: HookRun, *, sandboxed_run: bool) -> str:
    """The shell's or bubblewrap's own complaint, when that is why the command did not run."""
    said = _last_line(run.stderr)
    if run.exit_code in (126, 127) and any(fragment in said for fragment in _NOT_FOUND):
        return said
    if sandboxed_run and said.startswith("bwrap:"):
        return f"the sandbox could not start it ({said})"
    return ""


def _run(hook: HookCommand, argv: list[str], fds: tuple[int, ...], data: bytes, workspace: Path,
         cancelled: threading.Event, started: float) -> HookRun:
    process: subprocess.Popen[bytes] | None = None
    try:
        with starting_child():  # a SIGTERM meanwhile is raised once `process` is ours to kill
            process = subprocess.Popen(argv, cwd=workspace, env=hook_environment(workspace),
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       start_new_session=True, pass_fds=fds)
        return _wait(hook, process, data, cancelled, started)
    except OSError as error:
        if process is not None:
            _signal_group(process, signal.SIGKILL)
            raise
        return HookRun(hook, "not_started", problem=f"{argv[0]}: {error.strerror or error}",
                       seconds=time.monotonic() - started)
    except BaseException:  # SIGTERM's SystemExit, a KeyboardInterrupt: no hook of ours outlives us
        if process is not None:
            _signal_group(process, signal.SIGKILL)
        raise


def _wait(hook: HookCommand, process: subprocess.Popen[bytes], data: bytes, cancelled: threading.Event,
          started: float) -> HookRun:
    assert process.stdin and process.stdout and process.stderr
    out, err = _Capped(), _Capped()
    threads = [threading.Thread(target=_feed, args=(process.stdin, data), daemon=True),
               threading.Thread(target=out.pump, args=(process.stdout,), daemon=True),
               threading.Thread(target=err.pump, args=(process.stderr,), daemon=True)]
    for thread in threads:
        thread.start()
    ended = "exited"
    deadline = started + hook.timeout
    while True:
        try:
            process.wait(0.05)
            break
        except subprocess.TimeoutExpired:
            pass
        if cancelled.is_set() or time.monotonic() > deadline:
            ended = "stopped" if cancelled.is_set() else "timeout"
            _stop_group(process)
            break
    for thread in threads[1:]:
        thread.join(0.5)
    if any(thread.is_alive() for thread in threads[1:]):  # a background child still holds the pipes
        _signal_group(process, signal.SIGKILL)
        for thread in threads[1:]:
            thread.join(1.0)
    return HookRun(hook, ended, process.returncode if ended == "exited" else None, out.text(), err.text(),
                   time.monotonic() - started)


def _feed(pipe: Any, data: bytes) -> None:
    """Write the payload and close stdin; a hook that never reads it is no error (Claude Code's too)."""
    try:
        pipe.write(data)
    except (BrokenPipeError, OSError):
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group, then SIGKILL if it is still there a second later."""
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(1.0)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(process, signal.SIGKILL)
    try:
        process.wait(2.0)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _Capped:
    """The first ``OUTPUT_LIMIT`` bytes of a pipe, and a count of the rest."""

    def __init__(self) -> None:
        self.kept = bytearray()
        self.dropped = 0

    def pump(self, pipe: Any) -> None:
        try:
            while chunk := os.read(pipe.fileno(), 65536):
                room = OUTPUT_LIMIT - len(self.kept)
                self.kept += chunk[:room]
                self.dropped += max(0, len(chunk) - room)
        except OSError:
            pass
        finally:
            pipe.close()

    def text(self) -> str:
        text = self.kept.decode("utf-8", "replace")
        return text + (f"\n[… {self.dropped:,} bytes left out …]" if self.dropped else "")
