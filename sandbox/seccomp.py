"""The seccomp filter of sandboxed commands: kernel interfaces a command has no use for are refused.

Built with libseccomp (through ``pyseccomp``), exported as classic BPF once per process and handed to
bubblewrap with ``--seccomp FD``. Refused, each for a reason:

- **Sockets of any family but AF_INET and AF_INET6** (``socket``): a read-only bind does not stop
  ``connect()`` on a Unix socket file, and a command whose user namespace maps to host root is root
  to a daemon checking peer credentials (docker, systemd, dbus); ``AF_VSOCK`` reaches the hypervisor
  host whatever the network namespace; ``AF_PACKET`` and raw families are for network tools we do not
  run. ``AF_NETLINK`` only with ``NETLINK_ROUTE`` (glibc's ``getaddrinfo`` and ``ip addr`` read the
  interfaces of the command's own network namespace); ``NETLINK_SOCK_DIAG`` would list every socket.
  ``socketpair`` only for ``AF_UNIX`` (connects to nothing outside: builds and test runners use it).
- **io_uring** (``io_uring_setup``/``enter``/``register``, ENOSYS so runtimes fall back): its
  ``IORING_OP_SOCKET`` and ``IORING_OP_CONNECT`` make and connect sockets without the ``socket``
  call, past every rule above.
- **Kernel-facing interfaces**: ``bpf``, ``perf_event_open`` (kernel pointers, side channels),
  ``userfaultfd`` (stalls the kernel at will: the usual exploit primitive), ``keyctl``/``add_key``/
  ``request_key`` (the kernel keyring is not namespaced per sandbox), module loading, ``kexec``,
  ``reboot``, swap, ``acct``, ``quotactl``, ``syslog``, clock setting.
- **Filesystem and namespace changes**: ``mount`` and the new mount API, ``pivot_root``, ``unshare``,
  ``setns``, ``open_by_handle_at`` (opens files by handle, past bind mounts).
- **Terminal injection**: ``ioctl(TIOCSTI)`` and ``ioctl(TIOCLINUX)`` push input into a terminal.
- **Another ABI** (x32, i386: ``socketcall`` hides its arguments): ENOSYS for the whole call.

Not refused: ``ptrace`` and ``process_vm_readv`` (gdb and strace work; the pid namespace leaves
only the command's own processes to trace).
"""

from __future__ import annotations

import errno
import os
import socket
import threading

__all__ = ["DENIED", "SOCKET_FAMILIES", "memfd_with_program", "program"]

SOCKET_FAMILIES = (socket.AF_INET, socket.AF_INET6)  # what socket() may create; AF_NETLINK: route only
_AF_MAX = 46
_NETLINK_ROUTE = 0
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C
_IO_URING = ("io_uring_setup", "io_uring_enter", "io_uring_register")
DENIED = (
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "syslog", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "unshare", "setns", "open_by_handle_at", "lookup_dcookie",
    "vhangup", "iopl", "ioperm", "uselib", "nfsservctl", "fanotify_init",
)


_built: list[bytes | None] = []
_building = threading.Lock()


def program() -> bytes | None:
    """The filter as BPF bytes, or None when libseccomp cannot be loaded here; built once per process.

    Once, under a lock: libseccomp is not safe to drive from two threads at once (the start-up probe
    runs on its own thread), and building it failed with EINVAL when they met."""
    with _building:
        if not _built:
            _built.append(_program())
        return _built[0]


def _program() -> bytes | None:
    try:
        import pyseccomp as sc
    except (ImportError, OSError):
        return None
    deny = sc.ERRNO(errno.EPERM)
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.ERRNO(errno.ENOSYS))
    low = 0xFFFFFFFF  # an int argument is its low 32 bits; the high ones are the caller's to fill
    for family in range(_AF_MAX):
        if family not in SOCKET_FAMILIES and family != socket.AF_NETLINK:
            f.add_rule(deny, "socket", sc.Arg(0, sc.MASKED_EQ, low, family))
        if family != socket.AF_UNIX:
            f.add_rule(deny, "socketpair", sc.Arg(0, sc.MASKED_EQ, low, family))
    for call in ("socket", "socketpair"):
        f.add_rule(deny, call, sc.Arg(0, sc.GE, _AF_MAX))  # unknown families, and high bits set
    f.add_rule(deny, "socket", sc.Arg(0, sc.MASKED_EQ, low, socket.AF_NETLINK), sc.Arg(2, sc.NE, _NETLINK_ROUTE))
    for call in _IO_URING:
        f.add_rule(sc.ERRNO(errno.ENOSYS), call)
    for call in DENIED:
        try:
            f.add_rule(deny, call)
        except (RuntimeError, ValueError, OSError):  # a call this architecture does not have
            continue
    for request in (_TIOCSTI, _TIOCLINUX):
        f.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, low, request))
    fd = os.memfd_create("midstream-seccomp-build", 0)
    try:
        f.export_bpf(_Fd(fd))
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


class _Fd:
    """What ``export_bpf`` wants: something with a ``fileno``."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


def memfd_with_program() -> int | None:
    """A descriptor holding the filter, positioned at its start, for ``bwrap --seccomp FD``."""
    code = program()
    if code is None:
        return None
    fd = os.memfd_create("midstream-seccomp", 0)  # not inheritable by default; pass_fds hands it on
    os.write(fd, code)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
