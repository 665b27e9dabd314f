"""A seccomp filter for sandboxed commands: no Unix domain sockets.

A read-only bind does not stop ``connect()`` on a socket file, and a command whose user namespace maps
to host root (midstream run as root) is root to any daemon that checks the peer's credentials: the
Docker socket, systemd's private socket, containerd. Abstract sockets are reachable too when the
network is allowed. So a sandboxed command may not create an ``AF_UNIX`` socket at all (``socketpair``,
which connects to nothing, still works). Syscalls of another ABI (x32, 32-bit) are refused, since
``socketcall`` hides its arguments from the filter.

The filter is classic BPF, built here as bytes (``struct sock_filter`` is 8 bytes: u16 code, u8 jt,
u8 jf, u32 k) and handed to bubblewrap with ``--seccomp FD``. On an architecture it does not know,
``program()`` returns None and commands run without it.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

__all__ = ["memfd_with_program", "program"]

_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_DENY = 0x00050000 | errno.EPERM  # SECCOMP_RET_ERRNO
_ENOSYS = 0x00050000 | errno.ENOSYS
_AF_UNIX = 1
_X32_BIT = 0x40000000

# machine -> (AUDIT_ARCH_*, socket syscall number, whether x32 numbers exist)
_ARCHES = {
    "x86_64": (0xC000003E, 41, True),
    "aarch64": (0xC00000B7, 198, False),
}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def program() -> bytes | None:
    """The filter for this machine's architecture, or None when it is not one we know."""
    known = _ARCHES.get(platform.machine())
    if known is None:
        return None
    arch, socket_nr, has_x32 = known
    ops = [
        _op(_LD_W_ABS, 4),  # seccomp_data.arch
        _op(_JEQ_K, arch, jt=1, jf=0),
        _op(_RET_K, _ENOSYS),  # another ABI: refused
        _op(_LD_W_ABS, 0),  # seccomp_data.nr
    ]
    if has_x32:
        ops += [_op(_JGE_K, _X32_BIT, jt=0, jf=1), _op(_RET_K, _ENOSYS)]
    ops += [
        _op(_JEQ_K, socket_nr, jt=0, jf=3),
        _op(_LD_W_ABS, 16),  # the low half of args[0], the domain (little-endian)
        _op(_JEQ_K, _AF_UNIX, jt=0, jf=1),
        _op(_RET_K, _DENY),
        _op(_RET_K, _ALLOW),
    ]
    return b"".join(ops)


def memfd_with_program() -> int | None:
    """A descriptor holding the filter, positioned at its start, for ``bwrap --seccomp FD``."""
    code = program()
    if code is None:
        return None
    fd = os.memfd_create("midstream-seccomp", 0)  # not inheritable by default; pass_fds hands it on
    os.write(fd, code)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
