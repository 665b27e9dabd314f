"""Credentials in the environment: kept from every process midstream starts, and out of its own /proc.

``without_secrets`` is the environment for midstream's own child processes (git, rg): no variable
whose name says it holds a key, a token or a password. ``scrub_environ`` removes the model keys from
this process once the client holds them: from ``os.environ`` (so no child inherits them) and from the
initial environment block the kernel shows as ``/proc/PID/environ`` (which ``unsetenv`` leaves as it
was), so with ``--isolation none`` a command cannot read the key from its parent.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Mapping

__all__ = ["SECRET_NAME", "scrub_environ", "without_secrets"]

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.IGNORECASE)


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` less every variable whose name says it holds a credential."""
    return {name: value for name, value in env.items() if not SECRET_NAME.search(name)}


def _environ_block() -> tuple[int, int] | None:
    """Where the kernel keeps this process's initial environment (fields 50 and 51 of /proc/self/stat)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = open("/proc/self/stat", "rb").read()
        fields = stat[stat.rindex(b")") + 2:].split()
        return int(fields[47]), int(fields[48])
    return None


def scrub_environ(names: Iterable[str]) -> list[str]:
    """Remove ``names`` from the environment, also where /proc/PID/environ reads it; returns those removed."""
    names = [name for name in names if name in os.environ]
    for name in names:
        os.environ.pop(name, None)
    block = _environ_block()
    if not names or block is None:
        return names
    start, end = block
    with contextlib.suppress(OSError), open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(start)
        data = bytearray(mem.read(end - start))
        offset = 0
        for entry in bytes(data).split(b"\0"):
            name = entry.partition(b"=")[0].decode("utf-8", "replace")
            if name in names:
                data[offset:offset + len(entry)] = b"_" * len(entry)  # the name too: nothing to find
            offset += len(entry) + 1
        mem.seek(start)
        mem.write(bytes(data))
    return names
