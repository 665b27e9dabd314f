"""Dark or light: the ``theme`` setting, or what the terminal says its background is.

``auto`` asks the terminal (OSC 11, "what is your background colour?") where stdin and stdout are
the terminal, waiting at most ``ANSWER_WAIT`` for the answer; a terminal that does not answer (or
answers too late) leaves ``$COLORFGBG`` (set by rxvt, Konsole and others: ``15;0`` is light text
on black), and then dark, the common case.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
import termios
import time

__all__ = ["background", "typed_meanwhile"]

ANSWER_WAIT = 0.15  # seconds
_ANSWER = re.compile(rb"\]11;rgba?:([0-9a-fA-F]+)/([0-9a-fA-F]+)/([0-9a-fA-F]+)")


def background(setting: str, *, ask: bool = True) -> str:
    """``dark`` or ``light``; ``ask``: the terminal may be asked (not for -p, whose start-up is waited for)."""
    if setting in ("dark", "light"):
        return setting
    return (ask and _asked()) or _from_colorfgbg(os.environ.get("COLORFGBG", "")) or "dark"


_typed = [b""]  # what the person typed while the query waited for its answer


def typed_meanwhile() -> bytes:
    """Keys read while waiting for the terminal's answer (the answer taken out), for the prompt; once."""
    typed, _typed[0] = _typed[0], b""
    return typed


def _from_colorfgbg(value: str) -> str | None:
    parts = value.split(";")
    if len(parts) < 2 or not parts[-1].isdigit():
        return None
    return "light" if int(parts[-1]) in (7, 15) else "dark"


def _light(red: bytes, green: bytes, blue: bytes) -> bool:
    scale = float(16 ** len(red) - 1)
    r, g, b = (int(part, 16) / scale for part in (red, green, blue))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5  # relative luminance


def _asked() -> str | None:
    try:
        fd = sys.stdin.fileno()
        if not (os.isatty(fd) and sys.stdout.isatty()) or os.environ.get("TERM", "") in ("", "dumb"):
            return None
        saved = termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error):
        return None
    quiet = list(saved)
    quiet[3] &= ~(termios.ICANON | termios.ECHO)
    quiet[6] = list(saved[6])
    quiet[6][termios.VMIN], quiet[6][termios.VTIME] = 0, 0
    answer = b""
    try:
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
        sys.stdout.write("\x1b]11;?\x07")
        sys.stdout.flush()
        deadline = time.monotonic() + ANSWER_WAIT
        while (left := deadline - time.monotonic()) > 0 and not answer.endswith((b"\x07", b"\x1b\\")):
            if not select.select([fd], [], [], left)[0]:
                break
            answer += os.read(fd, 256)
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError, termios.error):
            termios.tcsetattr(fd, termios.TCSANOW, saved)
    match = _ANSWER.search(answer)
    if match is None:
        _typed[0] += answer.split(b"\x1b]")[0]  # keys, not the start of an answer cut off by the wait
        return None
    whole = re.search(rb"\x1b" + re.escape(match.group(0)) + rb"(\x07|\x1b\\)?", answer)
    start, end = whole.span() if whole else match.span()
    _typed[0] += answer[:start] + answer[end:]  # typed before or after the answer: kept for the prompt
    return "light" if _light(*match.groups()) else "dark"
