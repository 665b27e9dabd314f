"""OS isolation for shell commands: hardened bubblewrap, built as one ordered list of arguments.

What the kernel enforces for every command (``sandbox_argv`` builds it, top to bottom):

1. **No privilege**: a new user namespace with every capability dropped (``--unshare-user
   --cap-drop ALL``), also when midstream runs as root, where bubblewrap would otherwise keep them
   all (a root command could unmount or remount our read-only binds); no nested user namespaces.
2. **Filesystem**: the root is bound read-only; ``/dev`` is a minimal fresh one; ``/tmp`` is a
   private tmpfs; the workspace is bound writable, or read-only in read-only mode (so a writing
   command fails with EROFS whatever its text says).
3. **Protected paths** are bound read-only on top of a writable workspace: ``.git`` (a directory or
   a worktree's pointer file, its ``gitdir:`` target and common dir), nested repositories' ``.git``,
   ``.gitmodules`` and midstream's own ``.midstream`` configuration. A protected path that does not
   exist is pinned (an empty read-only directory is mounted at its place for the command's lifetime,
   and the empty mount point is removed afterwards), so it cannot be created either.
4. **Processes**: a fresh pid namespace with its own ``/proc`` (midstream's processes, and their
   ``/proc/PID/environ``, are not there), ``--new-session`` (no TIOCSTI into our terminal),
   ``--die-with-parent``.
5. **Network**: a new network namespace with only loopback, unless the person allowed the network.
6. **No Unix domain sockets** (sandbox/seccomp.py): a read-only bind does not stop ``connect()`` on a
   socket file, and root in our user namespace is root to a daemon checking peer credentials.

The environment is an allowlist (``command_environment``); the model service's keys never reach a
command. ``probe()`` runs once per process and checks the real sandbox from inside: a sandbox that
still has capabilities counts as unavailable, never as "probably fine".
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from midstream.sandbox import fdio, seccomp
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
CONFIG_DIR = ".midstream"  # midstream's own per-workspace configuration


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
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Probe(False, "bubblewrap is not installed")
    reason = ""
    for disable_userns in (True, False):  # --disable-userns needs bubblewrap 0.8
        candidate = Probe(True, "", bwrap, disable_userns)
        filter_fd = seccomp.memfd_with_program()
        argv = sandbox_argv(candidate, ["cat", "/proc/self/status"], Path("/"), writable=False, network=False,
                            protect=False, seccomp_fd=filter_fd)
        try:
            done = subprocess.run(argv, capture_output=True, timeout=10, env=command_environment(),
                                  stdin=subprocess.DEVNULL, pass_fds=() if filter_fd is None else (filter_fd,))
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
        filtered = caps.pop("Seccomp", "") == "2" or filter_fd is None
        if any(value != _ZERO_CAPS for value in caps.values()) or len(caps) != 3:
            return Probe(False, f"commands inside bubblewrap keep capabilities ({caps}), so it is no sandbox")
        if not filtered:
            return Probe(False, "bubblewrap did not apply the seccomp filter, so it is no sandbox")
        return candidate
    return Probe(False, reason)


def bwrap_works() -> bool:
    """Can shell commands be confined here (hardened, verified once)?"""
    return probe().available


def _small_text(path: Path) -> str:
    """A small regular file's text; "" for anything else (a FIFO named .git must not hang us)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        found = fdio.read_bytes(path.parent.resolve() / path.name)
        if found is not None and len(found[0]) < 4096:
            return found[0].decode("utf-8")
    return ""


_SYSTEM = (Path("/proc"), Path("/sys"), Path("/dev"))


def _git_dir(path: Path) -> Path | None:
    """``path`` resolved, if it is a git directory we may bind: never "/", /proc, /sys or /dev.

    A ``.git`` pointer file or symlink is data a repository (or a command) wrote; binding where it
    points, unchecked, could show the host's /proc inside the sandbox.
    """
    real = path.resolve()
    if real == Path("/") or any(real == top or top in real.parents for top in _SYSTEM):
        return None
    if real.is_dir() and (real / "HEAD").is_file() and (real / "objects").is_dir() or (real / "commondir").is_file():
        return real
    return None


def _git_dirs(dot_git: Path) -> list[Path]:
    """A ``.git`` pointer file's target and the common dir it shares with the main repository."""
    text = _small_text(dot_git) if not dot_git.is_dir() else ""
    if not text.startswith("gitdir:"):
        return []
    target = _git_dir(dot_git.parent / text[len("gitdir:"):].strip())
    if target is None:
        return []
    common = _small_text(target / "commondir").strip()
    shared = _git_dir(target / common) if common else None
    return [target] + ([shared] if shared else [])


_SKIP = frozenset({"node_modules", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache", ".tox"})
_SCAN_LIMIT = 200_000


@functools.lru_cache(maxsize=16)
def _nested_git(workspace: Path) -> tuple[Path, ...]:
    """Nested repositories' ``.git`` below the workspace, found once per session (bounded walk)."""
    found: list[Path] = []
    seen = 0
    stack = [workspace]
    while stack and seen < _SCAN_LIMIT:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        seen += len(entries)
        for entry in entries:
            if entry.name == ".git":
                if directory != workspace:
                    found.append(Path(entry.path))
                continue
            if entry.name not in _SKIP and entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return tuple(sorted(found))


def protected_paths(workspace: Path) -> list[tuple[Path, str]]:
    """Every path a command must not change even in a writable workspace, each with the reason."""
    root = workspace.resolve()
    paths: list[tuple[Path, str]] = [
        (root / ".git", "git's config and hooks: a planted core.fsmonitor or hook runs on the next git call"),
        (root / ".gitmodules", "submodule URLs and update commands"),
        (root / CONFIG_DIR, "midstream's own configuration"),
    ]
    for target in _git_dirs(root / ".git"):
        paths.append((target, "a worktree's real git directory"))
    for nested in _nested_git(root):
        paths.append((nested, "a nested repository's git directory"))
        paths += [(target, "a nested worktree's git directory") for target in _git_dirs(nested)]
    return paths


@functools.lru_cache(maxsize=16)
def _outside_git(root: Path) -> tuple[Path, ...]:
    """Git data the workspace uses from outside it: an enclosing repository's, a worktree's gitdir."""
    found = [target for target in _git_dirs(root / ".git") if not _inside(target, root)]
    for parent in root.parents:
        dot_git = parent / ".git"
        if dot_git.exists():
            found += [real for real in (_git_dir(dot_git),) if real] + _git_dirs(dot_git)
            break
    return tuple(found)


def _empty_dir() -> str:
    """An empty directory nobody writes, mounted read-only over a missing protected directory."""
    path = Path(tempfile.gettempdir()) / f"midstream-empty-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o555)
    if not path.is_dir() or path.is_symlink() or any(path.iterdir()) or path.stat().st_uid != os.getuid():
        path = Path(tempfile.mkdtemp(prefix="midstream-empty-"))
        path.chmod(0o555)
    return str(path)


def sandbox_argv(
    found: Probe,
    argv: list[str],
    workspace: Path,
    *,
    writable: bool,
    network: bool,
    protect: bool = True,
    pins: list[Path] | None = None,
    seccomp_fd: int | None = None,
) -> list[str]:
    """The whole sandbox as one list of bubblewrap arguments, in the order bubblewrap applies them."""
    root = workspace.resolve()
    args = [found.bwrap]
    # 1. No privilege, even for root: a user namespace without capabilities, and no nested one.
    args += ["--unshare-user", "--cap-drop", "ALL"]
    if found.disable_userns:
        args += ["--disable-userns"]
    # 4. Processes: own pid namespace and /proc, own session, gone when midstream goes.
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--new-session", "--die-with-parent"]
    # 5. Network: loopback only, unless allowed.
    if not network:
        args += ["--unshare-net"]
    # 6. No Unix domain sockets: the filter, from a descriptor the caller passes on.
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    # 2. Filesystem: everything read-only, fresh /dev and /proc, private /tmp, then the workspace.
    args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # Toolchains the private /tmp would hide (a virtualenv made under /tmp, as CI often does): read-only.
    args += [arg for path in _toolchains_in_tmp(root) for arg in ("--ro-bind", str(path), str(path))]
    args += ["--bind" if writable else "--ro-bind", str(root), str(root)]
    # Git data from outside the workspace stays visible (read-only), also where /tmp's tmpfs would hide it.
    args += [arg for path in _outside_git(root) if path.exists() for arg in ("--ro-bind", str(path), str(path))]
    # 3. Protected paths, read-only on top of the writable workspace; missing ones pinned.
    if writable and protect:
        empty = None
        for path, _reason in protected_paths(root):
            if path.is_symlink():  # bound where it points only if that is a git directory; else pinned
                real = _git_dir(path)
                args += ["--ro-bind", str(real) if real else "/dev/null", str(path)]
            elif path.exists():
                args += ["--ro-bind", str(path), str(path)]
            elif path.parent.is_dir() and _inside(path, root):
                empty = empty or _empty_dir()  # git ignores an empty directory: status stays clean
                args += ["--ro-bind", empty, str(path)]
                if pins is not None:
                    pins.append(path)
    # The workspace is a mount point here; git must still find a repository above it, as it would outside.
    args += ["--setenv", "GIT_DISCOVERY_ACROSS_FILESYSTEM", "1", "--chdir", str(root), "--", *argv]
    return args


def _toolchains_in_tmp(root: Path) -> list[Path]:
    """Python environments and PATH directories under /tmp, which the sandbox's own /tmp would hide.

    Only what a command is expected to run: midstream's own interpreter prefix, the active virtualenv
    or conda prefix, and each PATH directory (a virtualenv's bin/ as its whole environment). Never
    /tmp itself, nor anything inside the workspace (bound on its own).
    """
    tmp = Path("/tmp")
    candidates = [Path(sys.prefix), Path(sys.base_prefix)]
    candidates += [Path(os.environ[name]) for name in ("VIRTUAL_ENV", "CONDA_PREFIX") if os.environ.get(name)]
    for entry in filter(None, os.environ.get("PATH", "").split(os.pathsep)):
        directory = Path(entry)
        candidates.append(directory.parent if (directory.parent / "pyvenv.cfg").is_file() else directory)
    found: list[Path] = []
    for candidate in candidates:
        with contextlib.suppress(OSError):
            path = candidate.resolve()
            if (tmp in path.parents and path.is_dir() and not _inside(path, root) and not _inside(root, path)
                    and not any(_inside(path, kept) for kept in found)):
                found = [kept for kept in found if not _inside(kept, path)] + [path]
    return found


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


# The environment a command sees: names a build or a shell needs, never a credential.
_ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "COLORTERM", "EDITOR",
    "VISUAL", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "PYTHONPATH", "PYTHONIOENCODING",
    "GOPATH", "GOROOT", "GOFLAGS", "CARGO_HOME", "RUSTUP_HOME", "JAVA_HOME", "NODE_PATH", "NVM_DIR",
    "PYENV_ROOT", "MANPATH", "PKG_CONFIG_PATH", "LD_LIBRARY_PATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "CI",
})
_ALLOWED_PREFIXES = ("LC_", "XDG_")
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.IGNORECASE)


def command_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The allowlisted environment for a command, with pagers and prompts turned off."""
    source = dict(os.environ) if base is None else base
    env = {k: v for k, v in source.items()
           if (k in _ALLOWED or k.startswith(_ALLOWED_PREFIXES)) and not _SECRET_NAME.search(k)}
    env.setdefault("PATH", os.defpath)
    env.update(PAGER="cat", GIT_PAGER="cat", GIT_TERMINAL_PROMPT="0", NO_COLOR="1", TMPDIR="/tmp")
    return env


@contextlib.contextmanager
def sandboxed(argv: list[str], workspace: Path, mode: str, *, writable: bool = True,
              network: bool = False) -> Iterator[tuple[list[str], tuple[int, ...]]]:
    """(argv, descriptors to pass on) to run ``argv`` under ``mode``: "bwrap", "auto" (when safe) or "none".

    On leaving, the empty mount points that pinned missing protected paths are removed again.
    """
    if mode == "none":
        yield argv, ()
        return
    found = probe()
    if not found.available:
        if mode == "bwrap":
            raise IsolationUnavailable(f"--isolation bwrap: {found.reason} ({INSTALL_HINT}, or use --isolation none)")
        yield argv, ()
        return
    pins: list[Path] = []
    filter_fd = seccomp.memfd_with_program()
    try:
        yield (sandbox_argv(found, argv, workspace, writable=writable, network=network, pins=pins,
                            seccomp_fd=filter_fd), () if filter_fd is None else (filter_fd,))
    finally:
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
    return SandboxStatus(True, f"shell commands run in bubblewrap, {where}", network=network)
