"""The interactive prompt: prompt_toolkit on a terminal, ``input()`` elsewhere; history per workspace.

Keys: Enter sends (so does Ctrl-J, which is what a pty's ``\\n`` is); Alt-Enter, or ``\\`` at the
end of the line then Enter, starts a new line; Tab completes ``/commands`` and paths (after ``@``
too); Esc alone does nothing (it is never a Meta prefix that eats the next key), Esc Esc clears
the line; a bracketed paste of more than a few lines is one token, ``[pasted 43 lines]``, and
Ctrl-O shows it in full (on an empty line Ctrl-O opens the last fold: ``/show``); Ctrl-C clears
the line, on an empty line says how to leave, and a second Ctrl-C within ``EXIT_WINDOW`` seconds
leaves; Ctrl-D on an empty line leaves.

prompt_toolkit is imported when the first prompt is drawn, never on the ``-p`` path. Its event
loop adds signal handlers while it runs and, removing them, resets SIGINT to Python's default and
the signal wakeup fd to none: both are put back after every prompt (interrupts.py relies on them).

The history file is appended to, never rewritten (one ``O_APPEND`` write per message, a JSON
string for a multi-line message so it stays one entry, the text itself otherwise, as readline
wrote it), so two agents in one workspace both keep their lines.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from midstream.sandbox.private import private_file
from midstream.tools.cli.attach import Pastes
from midstream.tools.conversation.transcript import state_dir

__all__ = ["Prompt", "history_entries"]

HISTORY_LENGTH = 2000
EXIT_WINDOW = 3.0  # seconds in which a second Ctrl-C on an empty prompt leaves
ESCAPE_TWICE = 1.0  # seconds in which a second Esc clears the line
_LEAVE_HINT = "(press Ctrl-C again to exit, or Ctrl-D)"


def history_entries(path: Path) -> list[str]:
    """The entries of a history file, oldest first: JSON strings, or plain lines (readline's format)."""
    try:
        raw = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    entries = []
    for line in raw[-HISTORY_LENGTH:]:
        if line.startswith('"'):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, str):
                    entries.append(value)
                    continue
        if line.strip():
            entries.append(line)
    return entries


class Prompt:
    """Reads one message; ``None`` means the person wants to leave (Ctrl-D, or Ctrl-C twice)."""

    def __init__(self, workspace: Path, pastes: Pastes | None = None,
                 commands: dict[str, str] | None = None) -> None:
        digest = hashlib.sha256(os.fsencode(workspace.resolve())).hexdigest()[:12]  # its bytes, whatever they are
        self.workspace = workspace
        self.history_file = state_dir() / "history" / f"{workspace.resolve().name}-{digest}"
        os.close(private_file(self.history_file))  # what was typed may hold secrets: 0600 in a 0700 directory
        self.pastes = pastes or Pastes()
        self.commands = commands or {}  # name -> one line of help, for Tab
        self._session: Any = None  # the PromptSession, built at the first read
        self._escaped_at: float | None = None
        self.by_key = False  # the line returned was a key's command, not typed
        self.terminal = sys.stdin.isatty() and sys.stdout.isatty()

    def read(self, prefill: str = "") -> str | None:
        """An empty line asks again; what is returned has its pasted blocks folded (see attach.Pastes)."""
        warned_at: float | None = None
        while True:
            try:
                text = self._read_terminal(prefill) if self.terminal else self._read_plain(prefill)
            except EOFError:
                print()  # what follows (the session's usage) starts on a line of its own
                return None
            except KeyboardInterrupt:  # only on an empty line: with text, Ctrl-C clears it
                if warned_at is not None and time.monotonic() - warned_at < EXIT_WINDOW:
                    print()
                    return None
                warned_at = time.monotonic()
                print(_LEAVE_HINT)
                prefill = ""
                continue
            prefill = ""
            if text is None:  # Ctrl-C cleared a line (plain input)
                continue
            if not text.strip():
                continue  # an empty Enter sends nothing
            if not self.by_key:  # a key's command (Ctrl-O's /show) is not something typed: not in the history
                self._remember(text)
            self.by_key = False
            return text

    def _remember(self, text: str) -> None:
        with contextlib.suppress(OSError):
            fd = private_file(self.history_file)
            try:
                os.write(fd, (_history_line(self.pastes.expand(text)) + "\n").encode())
            finally:
                os.close(fd)

    # -- a terminal: prompt_toolkit -----------------------------------------------------------------

    def _read_terminal(self, prefill: str) -> str:
        session = self._session or self._build()
        with signals_kept():
            # The prompt is coloured (the default colour) so its space is written out ("› "), not skipped as blank.
            try:
                return session.prompt([("class:prompt", "› ")], default=prefill, handle_sigint=False)
            finally:
                session.app.erase_when_done = False  # set by Ctrl-O for the one read it ended

    def _build(self) -> Any:
        from midstream.tools.cli.completion import Completer, key_bindings
        from prompt_toolkit import PromptSession
        from prompt_toolkit.filters import Condition
        from prompt_toolkit.history import InMemoryHistory
        from prompt_toolkit.output.vt100 import Vt100_Output
        from prompt_toolkit.styles import Style

        history = InMemoryHistory()
        for entry in history_entries(self.history_file):
            history.append_string(entry)
        starts_command = Condition(lambda: _typing_command(self._session))
        output = Vt100_Output.from_pty(sys.stdout)
        # No cursor-position requests: a terminal (or a test's pty) that does not answer them would
        # get a warning printed into the session; the prompt needs no more than the width.
        output.enable_cpr = False
        self._session = PromptSession(
            output=output, style=Style.from_dict({"prompt": "bold fg:ansidefault"}),
            history=history, multiline=True, key_bindings=key_bindings(self),
            completer=Completer(self.workspace, self.commands), complete_while_typing=starts_command,
            prompt_continuation=lambda width, line, wrapped: [("class:prompt", "… ")], enable_open_in_editor=False,
            reserve_space_for_menu=4, mouse_support=False,
        )
        return self._session

    def escape(self, buffer: Any) -> None:
        """Esc: closes a completion menu; twice within ``ESCAPE_TWICE`` seconds clears the line."""
        if buffer.complete_state:
            buffer.cancel_completion()
            return
        now = time.monotonic()
        if self._escaped_at is not None and now - self._escaped_at < ESCAPE_TWICE:
            buffer.reset()
            self._escaped_at = None
            return
        self._escaped_at = now

    # -- no terminal: input() -----------------------------------------------------------------------

    def _read_plain(self, prefill: str) -> str | None:
        lines: list[str] = [prefill] if prefill else []
        while True:
            try:
                line = input("› " if not lines else "… ")
            except KeyboardInterrupt:
                if lines:
                    print("^C")
                    return None
                raise
            if line.endswith("\\"):
                lines.append(line[:-1])
                continue
            lines.append(line)
            return "\n".join(lines)


def _history_line(text: str) -> str:
    """One line of the history file: the text itself, or a JSON string when it has lines or a quote."""
    if "\n" in text or "\r" in text or text.startswith('"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _typing_command(session: Any) -> bool:
    """While the line is a lone ``/word``: its completions show as it is typed."""
    if session is None:
        return False
    text = session.default_buffer.document.text_before_cursor
    return text.startswith("/") and " " not in text and "\n" not in text


@contextlib.contextmanager
def signals_kept() -> Iterator[None]:
    """Whatever the prompt's event loop does to signal handlers and the wakeup fd, undone."""
    signals: Iterable[int] = (signal.SIGINT, getattr(signal, "SIGWINCH", signal.SIGINT))
    kept = {number: signal.getsignal(number) for number in signals}
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup, warn_on_full_buffer=False)
    try:
        yield
    finally:
        for number, handler in kept.items():
            if handler is not None:
                signal.signal(number, handler)
        signal.set_wakeup_fd(wakeup, warn_on_full_buffer=False)
