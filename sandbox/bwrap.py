"""The sandbox argument builder: a typed policy in, bubblewrap's whole argument list out.

``bwrap_argv`` is a pure function (it reads neither the filesystem nor the environment): everything
it needs was decided by ``hostview.plan`` and sits in the ``SandboxPolicy``. It builds the list in
the order bubblewrap applies it, each step one block:

1. **No privilege**, also for root: a user namespace without capabilities, no nested one.
2. **Processes**: own pid, ipc, uts and cgroup namespaces and ``/proc``; own session; gone with us.
3. **Network**: loopback only unless allowed.
4. **Kernel interfaces**: the seccomp filter (sandbox/seccomp.py) from a descriptor the caller passes.
5. **An allowlist of the host**: an empty root; the system directories read-only (symlinks kept as
   symlinks); fresh ``/dev`` and ``/proc``; private ``/tmp``; an empty writable ``HOME``; the
   workspace (writable or not); read-only toolchains; the private package cache, writable.
6. **Protected paths** read-only on top of the workspace, each with its reason; missing ones pinned.
7. **Hidden paths**: trusted files a writable bind would otherwise show (midstream's state and
   config, credentials under a workspace that is ``$HOME``) covered by an empty read-only directory.
8. **Environment**: cleared, then only the policy's variables; the working directory; the command.

``launch_argv`` puts the per-command limits wrapper (sandbox/limits.py) and any ``prefix`` (the
transaction overlay's ``unshare`` wrapper) in front.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Bind", "Link", "SandboxPolicy", "bwrap_argv", "launch_argv"]


@dataclass(frozen=True)
class Bind:
    """One mount: ``source`` shown at ``dest``, with the one-line reason it is there."""

    source: str
    dest: str
    reason: str = ""
    writable: bool = False


@dataclass(frozen=True)
class Link:
    """A symlink in the sandbox's root, as on the host (``/bin -> usr/bin`` on a merged-/usr system)."""

    target: str
    dest: str


@dataclass(frozen=True)
class SandboxPolicy:
    """Everything the sandbox of one command is, decided before a single argument is written."""

    bwrap: str  # absolute path, resolved once at start outside anything a command can write
    workspace: Path
    writable: bool = True  # the workspace is bound writable (False: read-only mode)
    network: bool = False  # keep the host's network namespace
    disable_userns: bool = True  # bubblewrap >= 0.8 can forbid nested user namespaces
    seccomp_fd: int | None = None  # a descriptor holding the filter program, passed to bwrap
    system: tuple[Bind, ...] = ()  # read-only system directories
    links: tuple[Link, ...] = ()  # root-level symlinks (merged /usr)
    tmpfs: tuple[str, ...] = ("/tmp",)  # private, empty, writable
    home: str = ""  # the command's HOME: an empty tmpfs ("" when the workspace is the home itself)
    read_only: tuple[Bind, ...] = ()  # toolchains, midstream's interpreter, outside git data, added paths
    writable_binds: tuple[Bind, ...] = ()  # the private package cache, added writable paths
    protected: tuple[Bind, ...] = ()  # read-only over the workspace (pins bind an empty directory)
    hidden: tuple[Bind, ...] = ()  # an empty read-only directory (or /dev/null) over a trusted path
    env: tuple[tuple[str, str], ...] = ()  # the command's whole environment
    prefix: tuple[str, ...] = field(default=())  # a wrapper in front of bwrap (the overlay's unshare)


def _binds(binds: tuple[Bind, ...]) -> list[str]:
    return [arg for b in binds for arg in ("--bind" if b.writable else "--ro-bind", b.source, b.dest)]


def bwrap_argv(policy: SandboxPolicy, command: list[str]) -> list[str]:
    """The whole sandbox of ``command`` as bubblewrap's arguments, in the order bubblewrap applies them."""
    p = policy
    args = [p.bwrap]
    # 1. No privilege, even for root.
    args += ["--unshare-user", "--cap-drop", "ALL"]
    args += ["--disable-userns"] if p.disable_userns else []
    # 2. Processes.
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--new-session", "--die-with-parent"]
    # 3. Network.
    args += [] if p.network else ["--unshare-net"]
    # 4. Kernel interfaces.
    args += [] if p.seccomp_fd is None else ["--seccomp", str(p.seccomp_fd)]
    # 5. The host, by allowlist: system read-only, fresh /dev and /proc, private /tmp, empty HOME.
    args += _binds(p.system)
    args += [arg for link in p.links for arg in ("--symlink", link.target, link.dest)]
    args += ["--dev", "/dev", "--proc", "/proc"]
    args += [arg for path in p.tmpfs for arg in ("--tmpfs", path)]
    args += ["--tmpfs", p.home] if p.home else []
    args += ["--bind" if p.writable else "--ro-bind", str(p.workspace), str(p.workspace)]
    # Toolchains and the package cache after the workspace: they win where a workspace that is $HOME holds them.
    args += _binds(p.read_only)
    args += _binds(p.writable_binds)
    # 6. Protected paths win over the writable workspace: bound after it.
    args += _binds(p.protected)
    # 7. Trusted paths that a bind above would show.
    args += _binds(p.hidden)
    # 8. Environment, directory, command.
    args += ["--clearenv"] + [arg for name, value in p.env for arg in ("--setenv", name, value)]
    args += ["--chdir", str(p.workspace), "--", *command]
    return args


def launch_argv(policy: SandboxPolicy, command: list[str], limits: list[str] | tuple[str, ...] = ()) -> list[str]:
    """What to execute: the limits wrapper, then the policy's prefix, then bubblewrap."""
    return [*limits, *policy.prefix, *bwrap_argv(policy, command)]
