"""The interactive prompt: the standard library's readline, with history kept per workspace.

readline gives line editing, Ctrl-R search and history files with no dependency; prompt_toolkit
would add multi-line editing but costs a dependency and ~0.1 s of import. Multi-line input: end a
line with a backslash to continue on the next, or paste a block (pasted newlines arrive as lines).

The history file is appended to, never rewritten (``append_history_file``, one ``O_APPEND`` write
per message), so two agents in one workspace both keep their lines; rewriting it with
``write_history_file`` kept only the last writer's view.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

from midstream.sandbox.private import private_file
from midstream.tools.conversation.transcript import state_dir

__all__ = ["Prompt"]

HISTORY_LENGTH = 2000
EXIT_WINDOW = 3.0  # seconds in which a second Ctrl-C on an empty prompt leaves


class Prompt:
    """Reads one message; ``None`` means the person wants to leave (Ctrl-D, or Ctrl-C twice)."""

    def __init__(self, workspace: Path) -> None:
        digest = hashlib.sha256(os.fsencode(workspace.resolve())).hexdigest()[:12]  # its bytes, whatever they are
        self.history_file = state_dir() / "history" / f"{workspace.resolve().name}-{digest}"
        try:
            import readline
        except ImportError:  # not on every platform; input() still works without it
            self._readline = None
            return
        self._readline = readline
        os.close(private_file(self.history_file))  # what was typed may hold secrets: 0600 in a 0700 directory
        with contextlib.suppress(OSError):
            readline.read_history_file(self.history_file)
        readline.set_history_length(HISTORY_LENGTH)

    def read(self, prefill: str = "") -> str | None:
        """An empty line asks again. Ctrl-C with text typed clears the line; on an empty line it says
        how to leave, and a second Ctrl-C within ``EXIT_WINDOW`` seconds leaves."""
        lines: list[str] = []
        warned_at: float | None = None
        while True:
            self._prefill(prefill)
            prefill = ""
            try:
                line = input("› " if not lines else "… ")
            except EOFError:
                print()  # what follows (the session's usage) starts on a line of its own
                return None
            except KeyboardInterrupt:
                typed = self._readline.get_line_buffer() if self._readline else ""
                if typed or lines:
                    print("^C")
                    lines, warned_at = [], None
                    continue
                if warned_at is not None and time.monotonic() - warned_at < EXIT_WINDOW:
                    print()
                    return None
                warned_at = time.monotonic()
                print("\n(press Ctrl-C again to exit, or Ctrl-D)")
                continue
            if line.endswith("\\"):
                lines.append(line[:-1])
                continue
            lines.append(line)
            if not "".join(lines).strip():
                lines = []  # an empty Enter sends nothing
                continue
            break
        text = "\n".join(lines)
        if self._readline is not None:
            with contextlib.suppress(OSError):
                self._readline.append_history_file(len(lines), self.history_file)
        return text

    def _prefill(self, text: str) -> None:
        """Start the next line with ``text`` (what was typed while the model worked)."""
        if self._readline is None:
            return
        readline = self._readline
        if not text:
            readline.set_pre_input_hook(None)
            return

        def insert() -> None:
            readline.insert_text(text)
            readline.redisplay()

        readline.set_pre_input_hook(insert)
