"""OS isolation for shell commands: bubblewrap with a read-only root, a writable workspace, no network.

Inside the sandbox the whole filesystem is visible read-only, the workspace is bound read-write at
its own path, ``/tmp`` is private and empty, and the network namespace has no interfaces. The
command gets its own PID namespace and dies with its parent, so killing bubblewrap kills everything
it started, however the command daemonised.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

__all__ = ["IsolationUnavailable", "bwrap_works", "isolate"]


class IsolationUnavailable(RuntimeError):
    """--isolation bwrap was asked for but bubblewrap cannot run here."""


@functools.cache
def bwrap_works() -> bool:
    """Is bwrap on PATH and allowed to create namespaces here? Probed once per process."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    try:
        probe = subprocess.run([bwrap, *_base_args(Path("/")), "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _base_args(workspace: Path) -> list[str]:
    return [
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        "--bind", str(workspace), str(workspace),
        "--chdir", str(workspace),
        "--unshare-net",
        "--unshare-pid",
        "--die-with-parent",
    ]


def isolate(argv: list[str], workspace: Path, mode: str) -> list[str]:
    """Wrap ``argv`` for ``mode``: "bwrap" (required), "auto" (when it works) or "none"."""
    if mode == "none":
        return argv
    if not bwrap_works():
        if mode == "bwrap":
            raise IsolationUnavailable(
                "--isolation bwrap: bubblewrap is not installed or cannot create namespaces here "
                "(install the 'bubblewrap' package, or use --isolation none)"
            )
        return argv
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    return [bwrap, *_base_args(workspace.resolve()), "--", *argv]
