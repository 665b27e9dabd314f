"""File access that acts on exactly the path that was checked: no check-then-reopen race.

``paths.confine`` resolves a path (every symlink followed) and checks it lies in the workspace. If a
tool then opened that path again by name, a command running beside it could swap a directory for a
symlink in between, and the read or write would land outside. Here every open walks the *resolved*
path from ``/`` one component at a time, relative to the directory descriptor of the component
before, with ``O_NOFOLLOW``: the resolved path has no symlinks, so meeting one means the tree
changed since the check, and the operation fails instead of following it. Writes create a
temporary file and rename it, both relative to the same parent descriptor.

Only regular files are opened: a FIFO would block the open (and the read) forever, a device may act
on being opened, a socket cannot be read. Each is refused before it is opened, and checked again on
the descriptor (same inode) after.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["NotRegular", "PathChanged", "open_regular", "parent_dir", "read_bytes", "remove", "replace"]

# O_PATH: a directory on the way needs only search permission, as with an ordinary path lookup.
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathChanged(OSError):
    """A component of a checked path became a symlink or stopped being a directory."""


class NotRegular(OSError):
    """The path is a FIFO, socket, device or directory: it is not opened."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def _changed(path: Path) -> PathChanged:
    return PathChanged(errno.ELOOP, f"{path} changed while it was being opened (a directory became a link); "
                       "nothing was read or written through it", str(path))


@contextlib.contextmanager
def parent_dir(path: Path, *, create: bool = False) -> Iterator[int]:
    """A descriptor of ``path``'s parent, reached without following any link; optionally created."""
    if not path.is_absolute():
        raise ValueError(f"{path} is not absolute")
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in path.parent.parts[1:]:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except (NotADirectoryError, OSError) as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise _changed(path) from None
                    raise
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _changed(path) from None
                raise
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _open_in(directory: int, path: Path, flags: int) -> tuple[int, os.stat_result]:
    name = path.name
    before = os.stat(name, dir_fd=directory, follow_symlinks=False)
    if stat.S_ISLNK(before.st_mode):
        raise _changed(path)
    if not stat.S_ISREG(before.st_mode):
        raise NotRegular(errno.EINVAL, f"{path} is {_kind(before.st_mode)}; only regular files are opened", str(path))
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _changed(path) from None
        raise
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise _changed(path)
    os.set_blocking(fd, True)
    return fd, after


@contextlib.contextmanager
def open_regular(path: Path) -> Iterator[tuple[int, os.stat_result]]:
    """An open descriptor (read-only) of the regular file at ``path``, and its stat."""
    with parent_dir(path) as directory:
        fd, info = _open_in(directory, path, os.O_RDONLY)
    try:
        yield fd, info
    finally:
        os.close(fd)


def read_bytes(path: Path, limit: int | None = None) -> tuple[bytes, int] | None:
    """(content, mode) of the regular file at ``path``, or None when it does not exist."""
    try:
        with open_regular(path) as (fd, info):
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks), stat.S_IMODE(info.st_mode)
    except FileNotFoundError:
        return None


def replace(path: Path, data: bytes, mode: int | None = None) -> None:
    """Atomically give the file at ``path`` this content: a temporary beside it, then a rename."""
    with parent_dir(path, create=True) as directory:
        name = path.name
        with contextlib.suppress(FileNotFoundError):
            existing = os.stat(name, dir_fd=directory, follow_symlinks=False)
            if not stat.S_ISREG(existing.st_mode):
                if stat.S_ISLNK(existing.st_mode):
                    raise _changed(path)
                raise NotRegular(errno.EINVAL, f"{path} is {_kind(existing.st_mode)}; it is not replaced", str(path))
            if mode is None:
                mode = stat.S_IMODE(existing.st_mode)
        temporary = f".{name[:200]}.{secrets.token_hex(4)}.midstream"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=directory)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
                f.flush()
                os.fsync(fd)
            os.fchmod(fd, mode if mode is not None else 0o666 & ~UMASK)
            os.close(fd)
            fd = -1
            os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=directory)
            raise


def remove(path: Path) -> bool:
    """Delete the file at ``path`` (never through a link, never a directory); False when it was not there."""
    try:
        with parent_dir(path) as directory:
            info = os.stat(path.name, dir_fd=directory, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                raise NotRegular(errno.EISDIR, f"{path} is a directory; it is not removed", str(path))
            os.unlink(path.name, dir_fd=directory)  # unlink removes a link itself, never its target
            return True
    except FileNotFoundError:
        return False


def _read_umask() -> int:
    """The process umask, read without changing it (os.umask would race with other threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    current = os.umask(0o022)
    os.umask(current)
    return current


UMASK = _read_umask()
"""The process umask, read once at import: snapshots and file writes apply it the same way."""
