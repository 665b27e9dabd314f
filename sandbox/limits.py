"""Per-command process and memory limits: a fork bomb or a memory bomb ends that command, not the machine.

Where the limits come from, best first:

1. **cgroup v2**, when midstream may create a child of its own cgroup with the ``pids`` and
   ``memory`` controllers (a delegated systemd scope, or root on a pure v2 host).
2. **cgroup v1** ``pids`` and ``memory`` hierarchies, when they are writable (root on a hybrid host).
3. **rlimits** only: ``RLIMIT_DATA`` (private writable memory per process: V8 and Go reserve large
   PROT_NONE ranges, which ``RLIMIT_AS`` would count) and ``RLIMIT_NPROC``. The kernel does not
   apply ``RLIMIT_NPROC`` to host root, and the sandbox maps the command's uid to midstream's own, so
   as root without a writable cgroup a fork bomb is bounded only by the command's timeout: the
   start-up line says so.

rlimits are set only where no cgroup is to be had. The command joins its
cgroup through a tiny ``/bin/sh`` wrapper before anything of it runs; a watcher thread ends the
whole command the moment it hits the process limit (a fork bomb would otherwise spin on EAGAIN
until its timeout), and ``verdict()`` says which limit ended it (also after ``close()``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Limits", "Running", "configure", "default_limits", "mechanism", "start"]

_GiB = 1 << 30
_counter = itertools.count()
_TOKEN = secrets.token_hex(4)
# Each word before "--": FILE=VALUE writes VALUE (its directory made first: the argv works even when
# started after the Python side closed, as a sandbox set up ahead of time is), ?FILE=VALUE the same if it
# can, FILE alone joins this process to that cgroup. Then exec the command.
_JOIN = ('for a; do [ "$a" = -- ] && break; case "$a" in'
         ' \\?*=*) f=${a%%=*}; f=${f#?}; echo "${a#*=}" > "$f" 2>/dev/null;;'
         ' *=*) f=${a%%=*}; mkdir -p "${f%/*}" && echo "${a#*=}" > "$f" || exit 125;;'
         ' *) echo $$ > "$a" || exit 125;; esac; shift; done; shift; exec "$@"')


@dataclass(frozen=True)
class Limits:
    """How much one command may use: processes (tasks, threads included) and memory in bytes."""

    processes: int = 2048
    memory: int = 8 * _GiB


_chosen: list[Limits] = []


def configure(limits: Limits) -> None:
    """Set the limits every later command gets (the settings, or a test)."""
    _chosen[:] = [limits]


def default_limits() -> Limits:
    """The configured limits, else the processes default and half the machine's memory up to 8 GiB."""
    if _chosen:
        return _chosen[0]
    total = 0
    with contextlib.suppress(OSError, ValueError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Limits(memory=min(8 * _GiB, total // 2) if total else 8 * _GiB)


def _own_cgroup() -> dict[str, str]:
    """controller name ("" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                found[name] = path
    return found


def _v2_root() -> Path | None:
    for candidate in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (candidate / "cgroup.controllers").is_file():
            return candidate
    return None


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _mechanism() -> tuple[str, list[Path]]:
    own = _own_cgroup()
    root = _v2_root()
    if root is not None and "" in own:
        parent = root / own[""].lstrip("/")
        with contextlib.suppress(OSError):
            enabled = (parent / "cgroup.subtree_control").read_text().split()
            if {"pids", "memory"} <= set(enabled) and _writable(parent):
                return "cgroup v2", [parent]
    parents = [Path("/sys/fs/cgroup") / name / own.get(name, "/").lstrip("/") for name in ("pids", "memory")]
    if all(_writable(p) and (p / "cgroup.procs").is_file() for p in parents):
        return "cgroup v1", parents
    return "rlimits", []


_found: list[tuple[str, list[Path]]] = []


def mechanism() -> str:
    """Which limits apply here: "cgroup v2", "cgroup v1" or "rlimits" (looked at once per process)."""
    if not _found:
        _found.append(_mechanism())
        _remove_stale(_found[0][1])
    return _found[0][0]


_STALE_SECONDS = 600


def _remove_stale(parents: list[Path]) -> None:
    """Empty cgroups a killed midstream left behind: older than ten minutes, so never one about to be joined.

    Not by pid: the hierarchy may be shared with other pid namespaces (containers), where our pids mean
    nothing, and a group is empty for a moment between its mkdir and the command joining it.
    """
    now = time.time()
    for parent in parents:
        with contextlib.suppress(OSError):
            for group in parent.glob("midstream-*"):
                with contextlib.suppress(OSError):
                    if now - group.stat().st_mtime > _STALE_SECONDS:
                        group.rmdir()  # only ever succeeds when no process is left in it


class Running:
    """The limits of one command while it runs: the wrapper argv, the watcher, and what ended it."""

    def __init__(self, limits: Limits, prlimit: str | None, sh: str) -> None:
        mechanism()
        kind, parents = _found[0]
        self.limits = limits
        self.groups: list[Path] = []
        name = f"midstream-{os.getpid()}-{_TOKEN}-{next(_counter)}"  # unique across pid namespaces too
        self.groups = [parent / name for parent in parents]
        self.kind = kind if self.groups else "rlimits"
        # Only without a cgroup (which bounds the whole command, and ends it more clearly): an exec of
        # prlimit inside the sandbox costs more than the cgroup itself. rlimits go inside the sandbox, after
        # its user namespace exists: RLIMIT_NPROC then counts the command's own processes, not all of ours.
        rlimits = [prlimit, f"--data={limits.memory}", f"--nproc={limits.processes}", "--"] if prlimit else []
        self.inner = rlimits if self.kind == "rlimits" else []
        writes = self._limit_words(kind)
        joins = [str(g / "cgroup.procs") for g in self.groups]
        self.wrapper = [sh, "-c", _JOIN, "midstream-limits", *writes, *joins, "--"] if joins else []
        self._hit = ""
        self._stop = threading.Event()
        if self.groups:
            threading.Thread(target=self._watch, daemon=True, name="midstream-limits").start()

    def _limit_words(self, kind: str) -> list[str]:
        """The wrapper's FILE=VALUE words that make and fill this command's cgroups."""
        processes, memory = self.limits.processes, self.limits.memory
        if kind == "cgroup v2":
            group = self.groups[0]
            return [f"{group}/pids.max={processes}", f"{group}/memory.max={memory}", f"?{group}/memory.swap.max=0"]
        if kind == "cgroup v1":
            pids, mem = self.groups
            return [f"{pids}/pids.max={processes}", f"{mem}/memory.limit_in_bytes={memory}",
                    f"?{mem}/memory.memsw.limit_in_bytes={memory}"]
        return []

    def _events(self, name: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for group in self.groups:
            with contextlib.suppress(OSError, ValueError):
                for line in (group / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    counts[key] = counts.get(key, 0) + int(value)
        return counts

    def _over_processes(self) -> bool:
        return self._events("pids.events").get("max", 0) > 0

    def _oom_killed(self) -> bool:
        return (self._events("memory.events").get("oom_kill", 0) > 0
                or self._events("memory.oom_control").get("oom_kill", 0) > 0)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            if self._over_processes():
                self._hit = self._hit or "processes"
                self.kill()
            elif self._oom_killed():
                self._hit = self._hit or "memory"
                self.kill()  # the kernel killed one process; the command as a whole is over its limit

    def kill(self) -> None:
        """SIGKILL every process of the command; the sandbox's pid namespace takes the rest with it."""
        for group in self.groups:
            with contextlib.suppress(OSError):
                (group / "cgroup.kill").write_text("1")
            with contextlib.suppress(OSError, ValueError):
                for pid in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(pid), signal.SIGKILL)

    def verdict(self) -> str:
        """One line when a limit ended the command, else ""."""
        hit = self._hit or ("memory" if self._oom_killed() else "processes" if self._over_processes() else "")
        if hit == "processes":
            return (f"[stopped: the command reached its limit of {self.limits.processes} processes and threads "
                    "(a fork bomb, or far too much parallelism); every process of it was killed]")
        if hit == "memory":
            return (f"[stopped: the command reached its memory limit of {self.limits.memory // (1 << 20)} MiB "
                    "and was killed]")
        return ""

    def close(self) -> None:
        """Stop watching, note what ended the command, and remove its cgroups once empty.

        Never kills: a command's processes die with its pid namespace, and a sandbox set up ahead of
        time may still join these groups after this (the wrapper makes them again; an empty one left
        behind is removed at a later start).
        """
        self._stop.set()
        self._hit = self.verdict() and (self._hit or ("memory" if self._oom_killed() else "processes"))
        for group in reversed(self.groups):
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # the last process is being reaped
                    threading.Event().wait(0.002)


def start(limits: Limits, prlimit: str | None, sh: str) -> Running:
    """Create the limits of one command (before it starts)."""
    return Running(limits, prlimit, sh)
