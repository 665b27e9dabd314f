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
from pathlib import Path

from midstream.tools.conversation.transcript import state_dir

__all__ = ["Prompt"]

HISTORY_LENGTH = 2000


class Prompt:
    """Reads one message; ``None`` means the person wants to leave (empty line or Ctrl-D)."""

    def __init__(self, workspace: Path) -> None:
        digest = hashlib.sha256(str(workspace.resolve()).encode()).hexdigest()[:12]
        self.history_file = state_dir() / "history" / f"{workspace.resolve().name}-{digest}"
        try:
            import readline
        except ImportError:  # not on every platform; input() still works without it
            self._readline = None
            return
        self._readline = readline
        self.history_file.parent.mkdir(parents=True, exist_ok=True)
        self.history_file.touch()  # append_history_file does not create it
        with contextlib.suppress(OSError):
            readline.read_history_file(self.history_file)
        readline.set_history_length(HISTORY_LENGTH)

    def read(self) -> str | None:
        """Ctrl-C with text typed clears the line and asks again; on an empty line it leaves."""
        lines: list[str] = []
        while True:
            try:
                line = input("› " if not lines else "… ")
            except EOFError:
                return None
            except KeyboardInterrupt:
                typed = self._readline.get_line_buffer() if self._readline else ""
                if not typed and not lines:
                    print()
                    return None
                print("^C")
                lines = []
                continue
            if line.endswith("\\"):
                lines.append(line[:-1])
                continue
            lines.append(line)
            break
        text = "\n".join(lines)
        if not text.strip():
            return None
        if self._readline is not None:
            with contextlib.suppress(OSError):
                self._readline.append_history_file(len(lines), self.history_file)
        return text
