"""What of the host a sandboxed command sees: the planning half of the sandbox (bwrap.py builds the argv).

``plan`` reads the host once per command and returns a ``SandboxPolicy``:

- the system (``/usr``, ``/bin``, ``/lib*``, ``/etc``, ``/opt``, ``/nix``) read-only, with the files
  in ``/etc`` that hold secrets (``shadow``, ssh host keys, sudoers) covered;
- the workspace, a private ``/tmp`` and ``/var/tmp``;
- an empty ``HOME`` holding only the toolchain directories that exist, read-only, and a private
  package cache for this workspace (pip, npm, cargo, go), writable, at ``$HOME/.cache``;
- midstream's own interpreter or virtualenv, and each ``PATH`` directory, read-only when outside
  the system and the workspace;
- what the person adds with ``sandbox_read_only`` / ``sandbox_writable``.

Never shown: midstream's state and config directories (other sessions' transcripts, other
workspaces' undo data, the user settings), credentials, ``/run`` and its sockets, other workspaces.
When the workspace holds them (midstream run in ``$HOME``) they are covered by an empty read-only
directory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from midstream.sandbox import protected
from midstream.sandbox.bwrap import Bind, Link, SandboxPolicy

__all__ = ["CREDENTIALS", "TOOLCHAINS", "HostView", "configure", "empty_dir", "environment", "package_cache",
           "package_cache_root", "plan", "trusted_paths"]

SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix")
_ETC_SECRETS = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/ssh", "/etc/sudoers",
                "/etc/sudoers.d", "/etc/security/opasswd", "/etc/ssl/private", "/etc/machine-id")
# Under $HOME, read-only when present: where language toolchains keep what a build runs.
TOOLCHAINS = (".cargo/bin", ".rustup", ".local/bin", ".local/lib", ".pyenv", ".nvm", "go", ".npm-global",
              ".deno", ".bun", ".sdkman", ".volta", ".local/share/uv", ".elan", ".ghcup", ".opam")
# Under $HOME, covered when the workspace would show them.
CREDENTIALS = (".ssh", ".aws", ".config/gcloud", ".netrc", ".docker", ".kube", ".npmrc", ".pypirc",
               ".git-credentials", ".gnupg", ".local/share/keyrings", ".password-store", ".config/gh",
               ".cargo/credentials.toml", ".cargo/credentials", ".azure", ".terraform.d", ".config/hub",
               ".m2/settings.xml", ".gradle/gradle.properties", ".cache/huggingface", ".config/git/credentials",
               ".vault-token", ".bash_history", ".zsh_history", ".python_history", ".psql_history")
# Environment variables naming a toolchain's root (not CARGO_HOME: it holds the registry credentials).
_TOOLCHAIN_ROOTS = ("VIRTUAL_ENV", "CONDA_PREFIX", "PYENV_ROOT", "RBENV_ROOT", "NVM_DIR", "RUSTUP_HOME", "GOROOT",
                    "JAVA_HOME", "SDKMAN_DIR", "VOLTA_HOME")
_CACHE_ENV = (("XDG_CACHE_HOME", ""), ("PIP_CACHE_DIR", "pip"), ("npm_config_cache", "npm"),
              ("CARGO_HOME", "cargo"), ("GOMODCACHE", "go/mod"), ("GOCACHE", "go/build"), ("UV_CACHE_DIR", "uv"))


@dataclass(frozen=True)
class HostView:
    """What the person added to every command's view (settings ``sandbox_read_only``, ``sandbox_writable``)."""

    read_only: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()


_configured: list[HostView] = [HostView()]


def configure(view: HostView) -> None:
    """Set, once at start-up, the paths the person added to every command's view."""
    _configured[0] = view


def _home() -> Path:
    return Path(os.path.expanduser("~")).resolve()


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def trusted_paths() -> list[Path]:
    """midstream's own state and configuration: never visible to a command."""
    from midstream.tools.cli.settings import user_settings_file
    from midstream.tools.conversation.transcript import state_dir

    return [state_dir().resolve(), user_settings_file().parent.resolve(), package_cache_root()]


def package_cache_root() -> Path:
    """Where the sandboxes' package caches live, one per workspace: never shown to a command."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base).resolve() / "midstream"


def package_cache(workspace: Path) -> Path:
    """This workspace's private package cache (0700), outside anything another workspace sees."""
    from midstream.sandbox.private import private_dir

    key = hashlib.sha256(os.fsencode(workspace.resolve())).hexdigest()[:16]
    return private_dir(package_cache_root() / "sandbox-cache" / key)


@functools.lru_cache(maxsize=1)
def _system() -> tuple[tuple[Bind, ...], tuple[Link, ...], tuple[Bind, ...]]:
    """The system directories, root symlinks and /etc secrets: read once per process."""
    binds, links, hidden = [], [], []
    for top in SYSTEM:
        path = Path(top)
        if path.is_symlink():
            links.append(Link(os.readlink(path), top))
        elif path.is_dir():
            binds.append(Bind(top, top, "the system, read-only"))
    resolv = Path("/etc/resolv.conf")
    with contextlib.suppress(OSError):
        real = resolv.resolve()
        if resolv.is_symlink() and real.is_file() and not _inside(real, Path("/etc")):
            binds.append(Bind(str(real), str(real), "the resolver config /etc/resolv.conf points to"))
    for secret in _ETC_SECRETS:
        path = Path(secret)
        if path.is_symlink() or not path.exists():
            continue
        hidden.append(Bind(empty_dir() if path.is_dir() else "/dev/null", secret, "a host secret in /etc"))
    return tuple(binds), tuple(links), tuple(hidden)


def _interpreters(workspace: Path) -> list[Path]:
    """midstream's interpreter and virtualenv, the active environment, and PATH's directories."""
    roots = tuple(os.environ[name] for name in _TOOLCHAIN_ROOTS if os.environ.get(name))
    return list(_interpreters_for(workspace, os.environ.get("PATH", ""), roots, _home()))


@functools.lru_cache(maxsize=8)
def _interpreters_for(workspace: Path, search_path: str, roots: tuple[str, ...], home: Path) -> tuple[Path, ...]:
    """(cached per workspace, PATH, toolchain roots and HOME: all outside what a command can write)"""
    candidates = [Path(sys.prefix), Path(sys.base_prefix), *map(Path, roots)]
    for entry in filter(None, search_path.split(os.pathsep)):
        directory = Path(entry)
        whole = (directory.parent / "pyvenv.cfg").is_file() or directory.name == "shims"  # needs its root
        candidates.append(directory.parent if whole else directory)
    found: list[Path] = []
    for candidate in candidates:
        with contextlib.suppress(OSError):
            path = candidate.resolve()
            if (not path.is_absolute() or not path.is_dir() or path in (Path("/"), home)
                    or any(_inside(path, Path(top)) for top in SYSTEM if top != "/opt")
                    or _inside(path, workspace) or _inside(workspace, path) or _inside(home, path)):
                continue
            if not any(_inside(path, kept) for kept in found):
                found = [kept for kept in found if not _inside(kept, path)] + [path]
    return tuple(found)


def _outside_git(root: Path) -> list[Path]:
    """Git data the workspace uses from outside it: an enclosing repository's, a worktree's gitdir."""
    from midstream.sandbox.gitdirs import git_dir, pointed_dirs

    found = [target for target in pointed_dirs(root / ".git") if not _inside(target, root)]
    for parent in root.parents:
        dot_git = parent / ".git"
        if dot_git.exists():
            found += [real for real in (git_dir(dot_git),) if real] + pointed_dirs(dot_git)
            break
    return found


def _protected(root: Path, writable: bool, pins: list[Path] | None) -> list[Bind]:
    """Each protected path read-only over the workspace; a missing one pinned by an empty directory."""
    from midstream.sandbox.gitdirs import git_dir, pointed_dirs

    if not writable:
        return []
    binds: list[Bind] = []
    for guarded in protected.protected_paths(root):
        path, reason = guarded.path, guarded.reason
        if path.is_symlink():  # bound where it points only if that is a git directory; else covered
            real = git_dir(path)
            binds.append(Bind(str(real) if real else "/dev/null", str(path), reason))
        elif path.exists():
            binds.append(Bind(str(path), str(path), reason))
            binds += [Bind(str(t), str(t), f"{reason} (where it points)") for t in pointed_dirs(path)
                      if _inside(t, root)]
        elif path.parent.is_dir() and _inside(path, root):
            binds.append(Bind(empty_dir(), str(path), f"{reason} (pinned: it cannot be created)"))
            if pins is not None:
                pins.append(path)
    return binds


def _anchored(hidden: list[Bind], root: Path, writable: bool) -> list[Bind]:
    """Each directory between the workspace and a hidden path, bound onto itself first: a mount point
    cannot be renamed, so ``mv ~/.config ~/.old && mkdir ~/.config/midstream`` cannot put a new settings
    file where the hidden one was."""
    anchors: dict[str, Bind] = {}
    for bind in hidden:
        dest = Path(bind.dest)
        if _inside(dest, root) and dest != root:
            for parent in reversed(dest.parents):
                if _inside(parent, root) and parent != root and parent != dest and parent.is_dir():
                    anchors.setdefault(str(parent), Bind(str(parent), str(parent),
                                                         "holds a hidden path: it cannot be renamed away", writable))
    return [*anchors.values(), *hidden]


def _first_missing(path: Path, root: Path) -> Path | None:
    """The first component of ``path`` below ``root`` that does not exist (what to pin), or None."""
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink() or not current.exists():
            return None if current.is_symlink() else current
    return None


def _without_nested(binds: list[Bind]) -> list[Bind]:
    """Read-only binds, each once, none inside another (a PATH directory inside a bound toolchain)."""
    kept: list[Bind] = []
    for bind in binds:
        if not any(_inside(Path(bind.dest), Path(k.dest)) for k in kept):
            kept.append(bind)
    return kept


def environment(home: Path, source: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """A command's whole environment: the allowlist, HOME, the private caches, no XDG state/config/runtime."""
    from midstream.sandbox.isolation import command_environment

    env = command_environment(source)
    env["HOME"] = str(home)
    cache = home / ".cache"
    env.update({name: str(cache / sub) if sub else str(cache) for name, sub in _CACHE_ENV})
    env["GIT_DISCOVERY_ACROSS_FILESYSTEM"] = "1"  # the workspace is a mount point; git must still find a repo above
    return sorted(env.items())


def plan(bwrap: str, workspace: Path, *, writable: bool, network: bool, disable_userns: bool = True,
         seccomp_fd: int | None = None, pins: list[Path] | None = None, protect: bool = True) -> SandboxPolicy:
    """The sandbox of one command in ``workspace``, read from the host as it is now."""
    root = workspace.resolve()
    home, view = _home(), _configured[0]
    system, links, etc_secrets = _system()
    hidden = list(etc_secrets)
    tmpfs = ("/tmp", "/var/tmp")
    shown_home = "" if _inside(home, root) else str(home)  # a workspace that is $HOME shows it
    read_only = [Bind(str(p), str(p), "a toolchain in HOME") for name in TOOLCHAINS
                 if (p := home / name).exists() and not p.is_symlink() and not _inside(p, root)]
    read_only += [Bind(str(p), str(p), "midstream's interpreter, or a PATH directory") for p in _interpreters(root)]
    read_only += [Bind(str(p), str(p), "a worktree's or an enclosing repository's git data")
                  for p in _outside_git(root) if p.exists()]
    read_only += [Bind(str(p), str(p), "added by sandbox_read_only") for p in view.read_only if p.exists()]
    read_only = _without_nested(read_only)
    cache = package_cache(root)
    writable_binds = [Bind(str(cache), str(home / ".cache"), "this workspace's private package cache", True)]
    writable_binds += [Bind(str(p), str(p), "added by sandbox_writable", True) for p in view.writable if p.exists()]
    covered = home / ".cache"  # the private cache is bound over it
    for path in trusted_paths():
        if not _inside(path, root) or _inside(path, covered) or path == root:
            continue
        if path.exists() or path.is_symlink():
            hidden.append(Bind(empty_dir() if path.is_dir() else "/dev/null", str(path),
                               "midstream's own state and configuration"))
        elif (missing := _first_missing(path, root)) is not None and writable:
            # Not there yet (no settings file so far): pinned, so a command cannot create one for the next session.
            hidden.append(Bind(empty_dir(), str(missing), "where midstream's own configuration would go (pinned)"))
            if pins is not None:
                pins.append(missing)
    if not shown_home:
        hidden += [Bind(empty_dir() if p.is_dir() else "/dev/null", str(p), "a credential in HOME")
                   for name in CREDENTIALS
                   if (p := home / name).exists() and not p.is_symlink() and not _inside(p, covered)]
    hidden = _anchored(hidden, root, writable)
    return SandboxPolicy(
        bwrap=bwrap, workspace=root, writable=writable, network=network, disable_userns=disable_userns,
        seccomp_fd=seccomp_fd, system=tuple(system), links=tuple(links), tmpfs=tmpfs, home=shown_home,
        read_only=tuple(read_only), writable_binds=tuple(writable_binds),
        protected=tuple(_protected(root, writable, pins) if protect else ()), hidden=tuple(hidden),
        env=tuple(environment(home)),
    )


def empty_dir() -> str:
    """An empty directory nobody writes, mounted read-only over a missing or hidden directory."""
    path = Path(tempfile.gettempdir()) / f"midstream-empty-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o555)
    if not path.is_dir() or path.is_symlink() or any(path.iterdir()) or path.stat().st_uid != os.getuid():
        path = Path(tempfile.mkdtemp(prefix="midstream-empty-"))
        path.chmod(0o555)
    return str(path)
