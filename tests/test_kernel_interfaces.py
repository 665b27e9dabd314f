"""What the kernel refuses a sandboxed command: io_uring, socket families, and a bomb's worth of processes or memory.

Real bubblewrap, as root where the machine runs tests as root; the hostile programs are written here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from midstream.sandbox import limits
from midstream.sandbox.isolation import bwrap_works
from midstream.tools.registry import Decision, ToolContext
from midstream.tools.shell import bash

from tests.helpers import wait_until

pytestmark = [pytest.mark.process,
              pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here (.ci/run installs it)")]

# A whole io_uring client in ctypes: set up a ring, IORING_OP_SOCKET an AF_UNIX socket, IORING_OP_CONNECT it.
IO_URING = textwrap.dedent('''
    import ctypes, mmap, struct, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    params = ctypes.create_string_buffer(120)
    ring = libc.syscall(425, 4, params)  # io_uring_setup
    if ring < 0:
        print("setup refused errno", ctypes.get_errno()); sys.exit(3)
    sq_entries, cq_entries = struct.unpack_from("<II", params, 0)
    sq_off = struct.unpack_from("<7I", params, 40)  # head tail mask entries flags dropped array
    cq_off = struct.unpack_from("<6I", params, 80)  # head tail mask entries overflow cqes
    sq = mmap.mmap(ring, sq_off[6] + sq_entries * 4, offset=0)
    cq = mmap.mmap(ring, cq_off[5] + cq_entries * 16, offset=0x8000000)
    sqes = mmap.mmap(ring, sq_entries * 64, offset=0x10000000)
    def submit(opcode, fd, addr, length, off):
        tail = struct.unpack_from("<I", sq, sq_off[1])[0]
        mask = struct.unpack_from("<I", sq, sq_off[2])[0]
        sqe = bytearray(64)
        struct.pack_into("<BBHiQQII", sqe, 0, opcode, 0, 0, fd, off, addr, length, 0)
        sqes[(tail & mask) * 64:(tail & mask) * 64 + 64] = bytes(sqe)
        struct.pack_into("<I", sq, sq_off[6] + (tail & mask) * 4, tail & mask)
        struct.pack_into("<I", sq, sq_off[1], tail + 1)
        got = libc.syscall(426, ring, 1, 1, 1, None, 0)  # io_uring_enter, GETEVENTS
        if got < 0:
            print("enter refused errno", ctypes.get_errno()); sys.exit(4)
        head = struct.unpack_from("<I", cq, cq_off[0])[0]
        cmask = struct.unpack_from("<I", cq, cq_off[2])[0]
        _, res, _ = struct.unpack_from("<QiI", cq, cq_off[5] + (head & cmask) * 16)
        struct.pack_into("<I", cq, cq_off[0], head + 1)
        return res
    fd = submit(45, 1, 0, 0, 1)  # IORING_OP_SOCKET: AF_UNIX, SOCK_STREAM
    if fd < 0:
        print("socket refused", -fd); sys.exit(5)
    path = sys.argv[1].encode()
    addr = ctypes.create_string_buffer(struct.pack("<H", 1) + path + b"\\0", 110)
    res = submit(16, fd, ctypes.addressof(addr), 0, 110)  # IORING_OP_CONNECT
    print("connected" if res == 0 else f"connect refused {-res}")
''')

IO_URING_C = textwrap.dedent('''
    #include <errno.h>
    #include <stdio.h>
    #include <string.h>
    #include <sys/socket.h>
    #include <sys/syscall.h>
    #include <unistd.h>
    int main(void) {
        char params[120];
        memset(params, 0, sizeof params);
        long ring = syscall(425, 4, params);
        printf("io_uring_setup %ld errno %d\\n", ring, ring < 0 ? errno : 0);
        int vsock = socket(40, SOCK_STREAM, 0);
        printf("vsock %d errno %d\\n", vsock, vsock < 0 ? errno : 0);
        return ring >= 0 || vsock >= 0;
    }
''')


@pytest.fixture
def ws(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    return workspace


def sh(workspace: Path, command: str, timeout: int = 60):
    return bash.run(ToolContext(workspace=workspace, decision=Decision(isolation="bwrap")),
                    {"command": command, "timeout": timeout})


@pytest.fixture
def listener(ws):
    """A host daemon's Unix socket, inside the workspace so the path is visible: it must stay unreachable."""
    path = ws / "daemon.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    accepted: list[str] = []

    def serve() -> None:
        try:
            while True:
                server.accept()[0].close()
                accepted.append("peer")
        except OSError:
            return

    threading.Thread(target=serve, daemon=True).start()
    yield path, accepted
    server.close()


def test_io_uring_socket_and_connect_reach_a_host_socket_outside_but_not_inside(ws, listener):
    path, accepted = listener
    (ws / "uring.py").write_text(IO_URING)
    outside = subprocess.run([sys.executable, str(ws / "uring.py"), str(path)], capture_output=True, text=True)
    if "connected" in outside.stdout:  # this kernel allows io_uring: the program really is an attack
        assert wait_until(lambda: bool(accepted))  # (the daemon's accept() returns on its own thread)
        accepted.clear()
    inside = sh(ws, f"python3 uring.py {path}")
    assert "setup refused errno 38" in inside.content, inside.content  # ENOSYS: runtimes fall back
    assert "connected" not in inside.content and not wait_until(lambda: bool(accepted), timeout=1.0)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler here")
def test_a_c_program_compiled_inside_the_sandbox_gets_no_io_uring_and_no_vsock(ws):
    (ws / "uring.c").write_text(IO_URING_C)
    result = sh(ws, "gcc -o uring uring.c && ./uring")
    assert "io_uring_setup -1 errno 38" in result.content, result.content
    assert "vsock -1 errno 1" in result.content


def test_only_inet_sockets_and_unix_socketpairs_can_be_made(ws, listener):
    path, accepted = listener
    probe = textwrap.dedent('''
        import socket
        def attempt(name, make):
            try:
                make().close(); print(name, "made")
            except OSError as error:
                print(name, "refused", error.errno)
        attempt("vsock", lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM))
        attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
        attempt("unix", lambda: socket.socket(socket.AF_UNIX))
        attempt("sock_diag", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4))
        attempt("route", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))
        attempt("inet", lambda: socket.socket(socket.AF_INET))
        attempt("inet6", lambda: socket.socket(socket.AF_INET6))
        attempt("pair", lambda: socket.socketpair()[0])
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.argtypes = [ctypes.c_long] * 4
        high = libc.syscall(41, (1 << 32) | 1, 1, 0)  # AF_UNIX with the high bits set
        print("high", "made" if high >= 0 else "refused")
    ''')
    (ws / "probe.py").write_text(probe)
    out = sh(ws, "python3 probe.py").content
    for name in ("vsock", "packet", "unix", "sock_diag"):
        assert f"{name} refused" in out, out
    for name in ("route", "inet", "inet6", "pair"):
        assert f"{name} made" in out, out
    assert "high refused" in out and not accepted


@pytest.fixture
def small_limits():
    limits.configure(limits.Limits(processes=200, memory=256 << 20))
    yield
    limits._chosen.clear()


def _while_running(command: str, ws: Path) -> tuple[object, list[str]]:
    """Run ``command`` in the sandbox on a thread; meanwhile the host starts processes; the order is logged."""
    log: list[str] = []
    box: list[object] = []

    def run() -> None:
        box.append(sh(ws, command, timeout=120))
        log.append("command ended")

    worker = threading.Thread(target=run)
    worker.start()
    subprocess.run(["true"], check=True)
    log.append("host process ran")
    worker.join(180)
    assert not worker.is_alive()
    return box[0], log


@pytest.mark.skipif(limits.mechanism() == "rlimits" and os.geteuid() == 0,
                    reason="as root without a writable cgroup the kernel applies no process limit")
def test_a_fork_bomb_ends_that_command_with_a_clear_result(ws, small_limits):
    result, log = _while_running(":(){ :|: & wait; };:", ws)  # every level waits: the top never returns by itself
    assert result.is_error and "limit of 200 processes" in result.content, result.content
    assert log[0] == "host process ran"  # the machine kept forking for us while the bomb ran
    after = sh(ws, "echo still here")
    assert "still here" in after.content


def test_a_memory_bomb_ends_that_command_with_a_clear_result(ws, small_limits):
    bomb = "python3 -c \"a = []\nwhile True: a.append(bytearray(16 << 20))\""
    result, log = _while_running(bomb, ws)
    assert result.is_error, result.content
    if limits.mechanism() == "rlimits":
        assert "MemoryError" in result.content
    else:
        assert "memory limit of 256 MiB" in result.content, result.content
    assert "host process ran" in log
    assert "still here" in sh(ws, "echo still here").content
