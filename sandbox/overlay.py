"""Run a command against a copy-on-write view of the workspace: nothing it writes reaches the workspace.

The mechanism (checked on kernel 6.18 with bubblewrap 0.8, which has no ``--overlay``): the command's
sandbox argv (sandbox/isolation.py builds it) is wrapped in

    unshare --user --map-root-user --mount -- sh -c 'mount -t overlay … WS; mount -t tmpfs … STORE; exec bwrap …'

so inside a private mount namespace the workspace path *is* an overlay whose lower layer is the real
workspace and whose upper layer is a fresh directory of midstream's. bubblewrap then binds that path
as the workspace, with ``.git`` and the other protected paths read-only on top, as before. When the
command ends, its upper directory holds exactly what it changed (sandbox/changeset.py reads it), and
applying (sandbox/apply.py) is the only moment the workspace changes.

Where the upper directory lives (``Store``): a directory of midstream's on the workspace's own
filesystem, so applying a change is a rename, not a copy:

1. the state directory (``~/.local/state/midstream/overlay/<workspace>``), when it is on the same
   filesystem as the workspace: nothing of ours in the person's repository;
2. else ``.git/midstream/`` when ``.git`` is a directory on that filesystem (git ignores unknown
   directories there, and it is read-only inside the sandbox anyway);
3. else the state directory, and applying copies (slower, said in the start-up line).

The command never sees it: right after the overlay is mounted, an empty tmpfs with mode 000 is
mounted over the store inside the namespace (the overlay keeps its own references to its layers).

A sandbox is set up ahead of time (``Spare``): the overlay mounted, bubblewrap started, and a tiny
waiter inside that reads the real command from a pipe. Handing a command over then costs a pipe write,
not three process starts, which takes the sandbox's set-up off the path from block stop to tool start.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import secrets
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Layer", "OverlayUnavailable", "Store", "overlay_argv", "overlay_works", "store_for"]

# $1 workspace, $2 store (hidden), $3 upper, $4 work; then the sandbox argv.
# volatile: the layer is scratch (a crash discards it anyway), so copy-up skips its fsync of every file,
# which made rewriting 10,000 files 30 times slower than outside the overlay.
_SCRIPT = ('mount -t overlay overlay -o "lowerdir=$1,upperdir=$3,workdir=$4,userxattr,volatile" "$1" || exit 125; '
           'mount -t tmpfs -o size=4k,mode=000 midstream-hidden "$2" || exit 125; shift 4; exec "$@"')
MOUNT_FAILED = 125  # the script's own exit status: the overlay could not be set up


class OverlayUnavailable(RuntimeError):
    """The copy-on-write view cannot be set up here (no unshare, an old kernel, no user namespaces)."""


def _state_root() -> Path:
    from midstream.tools.conversation.transcript import state_dir

    return state_dir() / "overlay"


@dataclass(frozen=True)
class Layer:
    """One command's upper and work directories, inside the store."""

    dir: Path
    upper: Path
    work: Path

    def remove(self) -> None:
        """Remove what applying left (the work dir's inner directory has mode 000)."""
        def unlock(_function: object, path: str, _error: object) -> None:
            with contextlib.suppress(OSError):
                os.chmod(os.path.dirname(path), 0o700)
                os.chmod(path, 0o700)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)

        shutil.rmtree(self.dir, onerror=unlock)


class Store:
    """midstream's directory for one workspace's overlay layers and undo records."""

    def __init__(self, workspace: Path, root: Path | None = None) -> None:
        self.workspace = workspace.resolve()
        self.root, self.same_filesystem = _choose(self.workspace, root)
        self.layers = self.root / "layers"

    def new_layer(self) -> Layer:
        """A fresh, empty upper and work directory (named after our pid, so stale ones can be told)."""
        directory = self.layers / f"{os.getpid()}-{secrets.token_hex(6)}"
        upper, work = directory / "up", directory / "work"
        upper.mkdir(parents=True, mode=0o700)
        work.mkdir(mode=0o700)
        upper.chmod(0o755)  # the overlay root's mode is the workspace root's as the command sees it
        with contextlib.suppress(OSError):
            upper.chmod(self.workspace.stat().st_mode & 0o7777)
        return layer_of(directory)

    def remove_stale(self) -> int:
        """Layers of midstream processes that are gone (killed mid-command): nothing of theirs was applied."""
        removed = 0
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.layers):
                pid = entry.name.split("-", 1)[0]
                if pid.isdigit() and not _alive(int(pid)):
                    layer_of(Path(entry.path)).remove()
                    removed += 1
        return removed


def layer_of(directory: Path) -> Layer:
    return Layer(directory, directory / "up", directory / "work")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _choose(workspace: Path, root: Path | None) -> tuple[Path, bool]:
    """Where the store lives, and whether it shares the workspace's filesystem (see the module docstring)."""
    digest = hashlib.sha256(os.fsencode(workspace)).hexdigest()[:12]
    state = (root or _state_root()) / f"{workspace.name or 'root'}-{digest}"
    device = workspace.stat().st_dev
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    if state.stat().st_dev == device:
        return state, True
    dot_git = workspace / ".git"
    if root is None and dot_git.is_dir() and not dot_git.is_symlink() and dot_git.stat().st_dev == device:
        inside = dot_git / "midstream"
        with contextlib.suppress(OSError):
            inside.mkdir(mode=0o700, exist_ok=True)
            return inside, True
    return state, False


@functools.lru_cache(maxsize=8)
def store_for(workspace: Path) -> Store:
    """The one store of a workspace in this process (layers a killed midstream left are removed first)."""
    store = Store(workspace)
    store.remove_stale()
    return store


def overlay_argv(sandbox: list[str], workspace: Path, store: Store, layer: Layer) -> list[str]:
    """``sandbox`` (a bubblewrap argv) run with ``workspace`` replaced by an overlay onto ``layer``."""
    unshare = _program("unshare")
    return [unshare, "--user", "--map-root-user", "--mount", "--", _program("sh"), "-c", _SCRIPT, "sh",
            str(workspace.resolve()), str(store.root), str(layer.upper), str(layer.work), *sandbox]


@functools.cache
def _program(name: str) -> str:
    """System programs by absolute path, resolved once, never from the workspace."""
    for directory in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise OverlayUnavailable(f"{name} is not installed")


_probe_lock = threading.Lock()
_probed: dict[Path, str] = {}


def overlay_works(workspace: Path, sandbox: list[str] | None = None, fds: tuple[int, ...] = ()) -> str:
    """"" when a command can run in an overlay of ``workspace`` here, else why not. Once per workspace."""
    root = workspace.resolve()
    with _probe_lock:
        if root not in _probed:
            _probed[root] = _probe(root, sandbox or ["true"], fds)
        return _probed[root]


def _probe(workspace: Path, sandbox: list[str], fds: tuple[int, ...]) -> str:
    try:
        store = store_for(workspace)
        layer = store.new_layer()
    except (OSError, OverlayUnavailable) as error:
        return f"no place for the overlay's layers ({error})"
    try:
        done = subprocess.run(overlay_argv(sandbox, workspace, store, layer), capture_output=True, timeout=20,
                              stdin=subprocess.DEVNULL, pass_fds=fds)
    except (OSError, subprocess.TimeoutExpired, OverlayUnavailable) as error:
        return f"the overlay could not start ({error})"
    finally:
        layer.remove()
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return f"the kernel refused the overlay: {said[0]}"
    return ""
