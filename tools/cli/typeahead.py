"""Type-ahead: what the person types while a reply streams or tools run.

During a turn the terminal stays in cooked mode unless someone changes it, so the tty driver
echoes every key into the middle of the model's text, and the line is then read (or lost) by
whatever reads stdin next. ``TypeAhead.capturing()`` turns echo and line editing off for the
turn (Ctrl-C still raises SIGINT: ISIG stays on) and reads keys on a thread: printable keys
build the line, Backspace / Ctrl-U / Ctrl-W edit it, Enter queues it as the next message, Esc
calls ``on_escape`` (the command line plugs its interrupt in there), Ctrl-D on an empty line
means leave once the queue is done, Up takes the last queued message back into the line to edit
(Ctrl-U then drops it). Bracketed paste is switched on for the turn, so a pasted block joins
the line whole (folded by ``fold``, see attach.Pastes) instead of queueing one message per
pasted line. The line being typed and the
queue are shown by the renderer's ``typing(typed, queued)`` at the foot of its live region, never
inside the reply. When the turn ends the terminal is put back as it was; the queued messages are
sent one by one, and an unfinished line is handed to the next prompt to finish.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import sys
import termios
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["TypeAhead"]

_WORD_SEPARATORS = " \t"
_PASTE_ON, _PASTE_OFF = "\x1b[?2004h", "\x1b[?2004l"
_PASTE_START, _PASTE_END = "\x1b[200~", "\x1b[201~"


def _partial_marker(text: str, start: int) -> str:
    """The tail of ``text`` that could be the start of the paste's end marker, cut by a read."""
    for size in range(min(len(_PASTE_END) - 1, len(text) - start), 0, -1):
        if _PASTE_END.startswith(text[-size:]):
            return text[-size:]
    return ""


def _write_terminal(sequence: str) -> None:
    """A mode switch for the terminal the keys come from (stdout is that terminal when we capture)."""
    with contextlib.suppress(OSError, ValueError):
        if sys.stdout.isatty():
            sys.stdout.write(sequence)
            sys.stdout.flush()


class TypeAhead:
    """Keys typed during a turn on the terminal ``fd``; ``show(typed, queued)`` displays them."""

    def __init__(
        self,
        fd: int,
        show: Callable[[str, list[str]], None] | None = None,
        *,
        on_escape: Callable[[], None] | None = None,
        fold: Callable[[str], str] = lambda text: text,
    ) -> None:
        self.fd = fd
        self.fold = fold
        self.show = show or (lambda typed, queued: None)
        self.on_escape = on_escape
        self.typed = ""
        self.queued: list[str] = []
        self.eof = False  # Ctrl-D on an empty line: leave once the queued messages ran
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved: list[Any] | None = None  # terminal attributes to restore
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pasting: list[str] | None = None  # inside a bracketed paste: what it held so far
        self._pending = ""  # an escape sequence cut by the end of a read

    @classmethod
    def for_terminal(cls, renderer: object, on_escape: Callable[[], None] | None = None) -> TypeAhead | None:
        """For stdin when it is a terminal and the renderer can show what is typed (``typing``) and
        give the terminal back while it asks a question (``suspend_hooks``); else None."""
        hooks = getattr(renderer, "suspend_hooks", None)
        show = getattr(renderer, "typing", None)
        if hooks is None or show is None:
            return None
        try:
            fd = sys.stdin.fileno()
        except (OSError, ValueError):
            return None
        if not os.isatty(fd):
            return None
        typeahead = cls(fd, show, on_escape=on_escape)
        hooks.append(typeahead.paused)  # a question to the person reads stdin itself
        return typeahead

    # -- the queue ----------------------------------------------------------------------------------

    def next_message(self) -> str | None:
        """The oldest message queued during the last turn, if any."""
        with self._lock:
            return self.queued.pop(0) if self.queued else None

    def leftover(self) -> str:
        """The unfinished line typed during the last turn, handed over (and forgotten here)."""
        with self._lock:
            if self._pasting is not None:  # the turn ended inside a paste: keep what came of it
                self.typed += self.fold("".join(self._pasting))
                self._pasting = None
            self._pending = ""
            typed, self.typed = self.typed, ""
            return typed

    def take_eof(self) -> bool:
        """Was Ctrl-D pressed on an empty line during the last turn? (Asked once.)"""
        with self._lock:
            eof, self.eof = self.eof, False
            return eof

    # -- capturing keys during a turn ---------------------------------------------------------------

    @contextlib.contextmanager
    def capturing(self) -> Iterator[None]:
        """For the duration of a turn: no echo, keys read here."""
        try:  # a Ctrl-C raised while starting still puts the terminal back
            self._start()
            yield
        finally:
            self._finish()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Give the terminal back (echo, lines) while someone else reads it, e.g. a question."""
        running = self._thread is not None
        if running:
            self._finish()
        try:
            yield
        finally:
            if running:
                self._start()

    def _start(self) -> None:
        try:
            saved = termios.tcgetattr(self.fd)
        except (termios.error, ValueError, OSError):
            return  # no terminal (fd -1, a pipe, a closed stdin): nothing to capture
        quiet = list(saved)
        quiet[3] &= ~(termios.ICANON | termios.ECHO | termios.IEXTEN)
        quiet[6] = list(saved[6])
        quiet[6][termios.VMIN], quiet[6][termios.VTIME] = 1, 0
        self._saved = saved  # before the change: whatever happens next, _finish puts it back
        termios.tcsetattr(self.fd, termios.TCSANOW, quiet)
        _write_terminal(_PASTE_ON)
        self._stop.clear()
        self._thread = threading.Thread(target=self._read_keys, name="typeahead", daemon=True)
        self._thread.start()
        self._shown()

    def _finish(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=1)
            self._thread = None
        if self._saved is not None:
            _write_terminal(_PASTE_OFF)
            with contextlib.suppress(termios.error, ValueError, OSError):
                termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)
            self._saved = None

    def _read_keys(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(self.fd, 1024)
            except OSError:
                return
            if not data:
                return
            self.feed(data)

    # -- keys ---------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Apply keys as read from the terminal (one read: an Esc alone in it is the Esc key)."""
        text = self._pending + self._decoder.decode(data)
        self._pending = ""
        escape = False
        with self._lock:
            index = 0
            while index < len(text):
                if self._pasting is not None:  # everything up to the paste's end marker is text
                    end = text.find(_PASTE_END, index)
                    if end < 0:
                        kept = _partial_marker(text, index)
                        self._pasting.append(text[index:len(text) - len(kept)])
                        self._pending = kept
                        break
                    self._pasting.append(text[index:end])
                    self.typed += self.fold("".join(self._pasting))
                    self._pasting, index = None, end + len(_PASTE_END)
                    continue
                char = text[index]
                index += 1
                if char == "\x1b":
                    if text.startswith(_PASTE_START[1:], index):
                        self._pasting, index = [], index + len(_PASTE_START) - 1
                    elif index < len(text) and text[index] in "[O":  # an arrow or function key
                        end = index + 1
                        while end < len(text) and not ("@" <= text[end] <= "~"):
                            end += 1
                        if end >= len(text):  # cut by the read: wait for the rest
                            self._pending = text[index - 1:]
                            break
                        if text[index:end + 1] in ("[A", "OA"):  # Up: the last queued message back
                            self._take_back()
                        index = end + 1
                    else:
                        escape = True
                elif char in "\r\n":
                    if self.typed.strip():
                        self.queued.append(self.typed)
                    self.typed = ""
                elif char in "\x7f\b":
                    self.typed = self.typed[:-1]
                elif char == "\x04":  # Ctrl-D: on an empty line it means "leave", as at the prompt
                    self.eof = self.eof or not self.typed
                elif char == "\x15":  # Ctrl-U
                    self.typed = ""
                elif char == "\x17":  # Ctrl-W
                    self.typed = self.typed.rstrip(_WORD_SEPARATORS)
                    while self.typed and self.typed[-1] not in _WORD_SEPARATORS:
                        self.typed = self.typed[:-1]
                elif char == "\t" or char >= " ":
                    self.typed += char
        self._shown()
        if escape and self.on_escape is not None:
            self.on_escape()

    def _take_back(self) -> None:
        """Up: the newest queued message becomes the line being typed (what was typed goes first)."""
        if self.queued:
            last = self.queued.pop()
            self.typed = f"{last} {self.typed}".rstrip() if self.typed.strip() else last

    def _shown(self) -> None:
        with self._lock:
            typed, queued = self.typed, list(self.queued)
        self.show(typed, queued)
