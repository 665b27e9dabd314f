"""OS isolation for shell commands: hardened bubblewrap, one policy, one ordered argument list.

``hostview.plan`` reads the host into a ``SandboxPolicy`` (what a command sees); ``bwrap.bwrap_argv``
turns it into bubblewrap's arguments (pure, tested as an exact vector); ``limits`` bounds processes and
memory; ``seccomp`` refuses the kernel interfaces a command has no use for. This module runs the
start-up probe (once per process: a sandbox that still has capabilities, or that did not apply the
filter, counts as unavailable, never as "probably fine") and hands callers a ready command line.

The environment is an allowlist (``command_environment``); the model service's keys never reach a
command, nor do ``XDG_STATE_HOME``, ``XDG_CONFIG_HOME`` or ``XDG_RUNTIME_DIR``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from midstream.sandbox import bwrap as builder
from midstream.sandbox import hostview, limits, programs, seccomp
from midstream.sandbox.protected import protected_paths
from midstream.tools.events import SandboxStatus

__all__ = [
    "INSTALL_HINT",
    "IsolationUnavailable",
    "Probe",
    "bwrap_works",
    "command_environment",
    "probe",
    "protected_paths",
    "sandboxed",
    "startup_status",
]

INSTALL_HINT = "apt install bubblewrap"


class IsolationUnavailable(RuntimeError):
    """--isolation bwrap was asked for but bubblewrap cannot run here safely."""


@dataclass(frozen=True)
class Probe:
    """What the start-up check found: whether commands can be confined, and if not, why."""

    available: bool
    reason: str = ""
    bwrap: str = ""
    disable_userns: bool = False  # this bubblewrap can forbid nested user namespaces


_ZERO_CAPS = "0000000000000000"


_probe_lock = threading.Lock()
_probed: list[Probe] = []


def probe() -> Probe:
    """Is bubblewrap here, and does a command inside it really run without any capability? Once per process.

    Thread-safe: the command line starts it in the background at start-up and asks for the answer later.
    """
    with _probe_lock:
        if not _probed:
            _probed.append(_probe())
        return _probed[0]


def _probe() -> Probe:
    bwrap = programs.resolve("bwrap")
    if bwrap is None:
        return Probe(False, "bubblewrap is not installed (or only inside the workspace, where midstream never runs it)")
    if seccomp.program() is None:
        return Probe(False, "libseccomp cannot be loaded (apt install libseccomp2), so no seccomp filter")
    reason = ""
    scratch = Path(hostview.empty_dir())  # an empty read-only directory: the probe writes nothing
    for disable_userns in (True, False):  # --disable-userns needs bubblewrap 0.8
        candidate = Probe(True, "", bwrap, disable_userns)
        filter_fd = seccomp.memfd_with_program()
        policy = hostview.plan(bwrap, scratch, writable=False, network=False, disable_userns=disable_userns,
                               seccomp_fd=filter_fd, protect=False)
        try:
            done = subprocess.run(builder.bwrap_argv(policy, ["cat", "/proc/self/status"]), capture_output=True,
                                  timeout=10, env=_launcher_env(), stdin=subprocess.DEVNULL,
                                  pass_fds=() if filter_fd is None else (filter_fd,))
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Probe(False, f"bubblewrap could not start ({exc})")
        finally:
            if filter_fd is not None:
                os.close(filter_fd)
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["failed"]
            reason = f"bubblewrap cannot create namespaces here: {said[0]}"
            continue
        status = done.stdout.decode("utf-8", "replace")
        caps = {k: v.strip() for k, _, v in (line.partition(":") for line in status.splitlines())
                if k in ("CapEff", "CapPrm", "CapAmb", "Seccomp")}
        filtered = caps.pop("Seccomp", "") == "2"
        if any(value != _ZERO_CAPS for value in caps.values()) or len(caps) != 3:
            return Probe(False, f"commands inside bubblewrap keep capabilities ({caps}), so it is no sandbox")
        if not filtered:
            return Probe(False, "bubblewrap did not apply the seccomp filter, so it is no sandbox")
        return candidate
    return Probe(False, reason)


def _launcher_env() -> dict[str, str]:
    """The environment of bubblewrap and the limits wrapper themselves: the command's comes from --setenv."""
    return {"PATH": os.defpath, "LANG": "C.UTF-8"}


def bwrap_works() -> bool:
    """Can shell commands be confined here (hardened, verified once)?"""
    return probe().available


# The environment a command sees: names a build or a shell needs, never a credential.
_ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "COLORTERM", "EDITOR",
    "VISUAL", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "PYTHONPATH", "PYTHONIOENCODING",
    "GOPATH", "GOROOT", "GOFLAGS", "CARGO_HOME", "RUSTUP_HOME", "JAVA_HOME", "NODE_PATH", "NVM_DIR",
    "PYENV_ROOT", "MANPATH", "PKG_CONFIG_PATH", "LD_LIBRARY_PATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "CI",
})
_ALLOWED_PREFIXES = ("LC_",)  # no XDG_*: state, config and runtime dirs are midstream's, not a command's
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.IGNORECASE)


def command_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The allowlisted environment for a command, with pagers and prompts turned off."""
    source = dict(os.environ) if base is None else base
    env = {k: v for k, v in source.items()
           if (k in _ALLOWED or k.startswith(_ALLOWED_PREFIXES)) and not _SECRET_NAME.search(k)}
    env.setdefault("PATH", os.defpath)
    env.update(PAGER="cat", GIT_PAGER="cat", GIT_TERMINAL_PROMPT="0", NO_COLOR="1", TMPDIR="/tmp")
    return env


@dataclass
class Prepared:
    """One command ready to run: its argv, the descriptors to pass on, and what a limit did to it."""

    argv: list[str]
    fds: tuple[int, ...] = ()
    limits: limits.Running | None = None
    policy: builder.SandboxPolicy | None = None

    def __iter__(self) -> Iterator:
        return iter((self.argv, self.fds))

    def verdict(self) -> str:
        """One line when a process or memory limit ended the command, else ""."""
        return self.limits.verdict() if self.limits is not None else ""


@contextlib.contextmanager
def sandboxed(argv: list[str], workspace: Path, mode: str, *, writable: bool = True, network: bool = False,
              prefix: tuple[str, ...] = ()) -> Iterator[Prepared]:
    """The command line to run ``argv`` under ``mode``: "bwrap", "auto" (when safe) or "none".

    ``prefix`` goes between the limits wrapper and bubblewrap (the overlay's ``unshare`` wrapper).
    On leaving, the empty mount points that pinned missing protected paths are removed again.
    """
    if mode == "none":
        yield Prepared(argv)
        return
    found = probe()
    if not found.available:
        if mode == "bwrap":
            raise IsolationUnavailable(f"--isolation bwrap: {found.reason} ({INSTALL_HINT}, or use --isolation none)")
        yield Prepared(argv)
        return
    pins: list[Path] = []
    filter_fd = seccomp.memfd_with_program()
    running = limits.start(limits.default_limits(), programs.resolve("prlimit"), programs.resolve("sh") or "/bin/sh")
    try:
        policy = hostview.plan(found.bwrap, workspace, writable=writable, network=network,
                               disable_userns=found.disable_userns, seccomp_fd=filter_fd, pins=pins)
        policy = dataclasses.replace(policy, prefix=prefix) if prefix else policy
        command = [*running.inner, *argv]
        yield Prepared(builder.launch_argv(policy, command, running.wrapper),
                       () if filter_fd is None else (filter_fd,), running, policy)
    finally:
        running.close()
        if filter_fd is not None:
            os.close(filter_fd)
        for path in pins:
            _unpin(path)


def _unpin(path: Path) -> None:
    """Remove the empty file or directory bubblewrap created as a mount point, and nothing else."""
    with contextlib.suppress(OSError):
        info = path.lstat()
        if path.is_dir() and not path.is_symlink():
            path.rmdir()  # only ever succeeds when empty
        elif info.st_size == 0 and path.is_file() and not path.is_symlink():
            path.unlink()



def startup_status(isolation: str, network: bool) -> SandboxStatus:
    """What the person is told at start: confined, or (one line, never silently) why not."""
    if isolation == "none":
        return SandboxStatus(False, "--isolation none: shell commands run unconfined", network=True)
    found = probe()
    if not found.available:
        return SandboxStatus(False, f"no sandbox: {found.reason} ({INSTALL_HINT}); shell commands run unconfined",
                             network=True)
    where = "with the network" if network else "without network (--network allows it)"
    weak = ("; no process limit applies (root without a writable cgroup): a fork bomb runs until its timeout"
            if limits.mechanism() == "rlimits" and os.geteuid() == 0 else "")
    return SandboxStatus(True, f"shell commands run in bubblewrap, {where}{weak}", network=network)
