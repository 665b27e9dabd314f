"""The one sanitiser of text the model or the workspace controls, at every place it reaches a terminal.

A file name, a command, a session's title or a tool's output can carry escape sequences: OSC 52 sets
the clipboard, cursor movement erases the line that named the real command, a title sequence renames
the window, a bidi override shows ``evil.py`` as ``yp.live``. ``shown`` makes each such character
visible instead of obeyed: C0 controls as ``^X`` (newline and tab kept), DEL as ``^?``, C1 controls
and bidi overrides as ``<9b>`` / ``<U+202E>``. The terminal renderer, the plain renderer, the undo
reports, the ask-mode question, the session lists and the ``midstream:`` error lines all call it.
"""

from __future__ import annotations

__all__ = ["shown"]

_TABLE = {code: f"^{chr(code + 64)}" for code in range(32)}
_TABLE |= {0x7F: "^?"} | {code: f"<{code:02x}>" for code in range(0x80, 0xA0)}
_TABLE |= {code: f"<U+{code:04X}>" for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_KEEP_LINES = {k: v for k, v in _TABLE.items() if chr(k) not in "\n\t"}


def shown(text: str, *, one_line: bool = False) -> str:
    """``text`` with every control character made visible; ``one_line`` shows newlines as ^J too."""
    return text.translate(_TABLE if one_line else _KEEP_LINES)
