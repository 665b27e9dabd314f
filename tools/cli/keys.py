"""Keys during a turn: one thread reads the terminal in cbreak mode while the loop works.

A lone Esc byte calls ``on_escape`` (the command line wires it to the same interrupt Ctrl-C
makes). An Esc followed at once by more bytes is an escape sequence (an arrow key, a function
key, Alt+letter) and is skipped whole. Ctrl-C needs nothing from us: cbreak keeps ``ISIG``, so
the kernel still turns it into SIGINT. Every other byte is kept, in order, in ``typed``, so what
the person types during a turn is not lost: the prompt takes it with ``take_typed()`` and offers
it as the start of the next line (a type-ahead renderer can read the same buffer live).

The reader runs only between ``start()`` and ``stop()`` (``during()`` wraps a turn); ``paused()``
hands the terminal back, line mode and echo restored, while the person is asked a question.
"""

from __future__ import annotations

import contextlib
import os
import select
import termios
import threading
import tty
from collections.abc import Callable, Iterator

__all__ = ["KeyReader"]

ESC = 0x1B
SEQUENCE_GAP = 0.05  # bytes of one escape sequence arrive together; a person's next key does not


class KeyReader:
    """Reads the keys typed while a turn runs; a no-op when ``fd`` is not a terminal."""

    def __init__(self, fd: int, on_escape: Callable[[], None]) -> None:
        self.fd = fd
        self.on_escape = on_escape
        self.enabled = os.isatty(fd)
        self._typed = bytearray()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._saved: list | None = None
        self._wake_read, self._wake_write = -1, -1

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        try:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
        except termios.error:
            self._saved = None
            return
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._read, name="keys", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        os.write(self._wake_write, b"x")
        thread.join()
        os.close(self._wake_read)
        os.close(self._wake_write)
        if self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)
            self._saved = None

    @contextlib.contextmanager
    def during(self) -> Iterator[None]:
        self.start()
        try:
            yield
        finally:
            self.stop()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Give the terminal back (line mode, echo) for a question; resume reading after it."""
        running = self._thread is not None
        self.stop()
        try:
            yield
        finally:
            if running:
                self.start()

    def take_typed(self) -> str:
        """What was typed during the turn, and is not a key we act on; emptied by taking it."""
        with self._lock:
            data, self._typed = bytes(self._typed), bytearray()
        return data.decode("utf-8", "replace")

    # -- the reader thread -----------------------------------------------------------------------

    def _ready(self, timeout: float | None) -> bool:
        """Is a byte waiting on the terminal? False also when stop() asked us to end."""
        ready, _, _ = select.select([self.fd, self._wake_read], [], [], timeout)
        return self.fd in ready and self._wake_read not in ready

    def _read(self) -> None:
        while self._ready(None):
            try:
                data = os.read(self.fd, 1)
            except OSError:
                return
            if not data:
                return
            if data[0] == ESC:
                if self._ready(SEQUENCE_GAP):
                    self._skip_sequence()
                else:
                    self.on_escape()
            elif data[0] in (0x7F, 0x08):  # backspace: take back a typed character
                with self._lock:
                    text = self._typed.decode("utf-8", "replace")[:-1]
                    self._typed = bytearray(text.encode())
            elif data[0] >= 0x20 or data in (b"\n", b"\r", b"\t", b"\x04"):  # Ctrl-D: the prompt decides
                with self._lock:
                    self._typed += b"\n" if data == b"\r" else data

    def _skip_sequence(self) -> None:
        """CSI (Esc [ … final byte), SS3 (Esc O x) or Alt+key (Esc x): read it and drop it."""
        first = os.read(self.fd, 1)
        if first == b"[":
            while self._ready(SEQUENCE_GAP):
                byte = os.read(self.fd, 1)
                if not byte or 0x40 <= byte[0] <= 0x7E:
                    return
        elif first == b"O" and self._ready(SEQUENCE_GAP):
            os.read(self.fd, 1)
