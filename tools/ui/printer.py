"""The append-only printer: what is printed stays printed; only the live region below it is redrawn.

The terminal is split in two. Above: finished lines, written once, in order, each ending in a
newline, never moved, erased or written again. Below: the live region (the unfinished line of
text, running tools), at most ``rows - 1`` rows tall, which is the only thing ever redrawn.

A redraw goes back to the region's first row (``\\r`` and cursor-up by the region's height minus
one), erases to the end of the screen, writes any new finished lines, then the region again. That
is safe only because the printer knows the region's exact height: it renders the region itself,
wrapped at the current width, and crops it to fit the screen, so cursor-up can never reach (and
erase) a row above the region, and no row of the region is ever pushed into the scrollback.

Redraws are coalesced: at most one every ``min_interval`` seconds (a delta arriving after a
quiet spell is drawn at once), plus a slow tick while something on screen animates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

__all__ = ["LivePrinter"]

_HIDE_CURSOR, _SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"


class LivePrinter:
    """Prints renderables above a live region that ``region()`` describes (a list of renderables).

    ``lock`` is shared with the owner, which mutates the state ``region()`` reads under it; every
    method here must be called holding it, except ``start``/``stop`` which take it themselves.
    """

    def __init__(
        self,
        console: Console,
        region: Callable[[], list[Any]],
        lock: threading.RLock,
        *,
        min_interval: float = 1 / 40,
        tick: float = 0.1,
        on_print: Callable[[Any], None] | None = None,
    ) -> None:
        self.console = console
        self._region = region
        self._lock = lock
        self.min_interval = min_interval
        self.tick = tick
        self._on_print = on_print
        self._height = 0  # rows the region occupies now; the cursor is at the end of its last row
        self._active = False  # a region may be drawn (a turn is on and no question is open)
        self._dirty = False
        self._animated = False  # something in the region changes with time (spinner, elapsed)
        self._last_draw = 0.0
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin drawing the region (a turn started); idempotent."""
        with self._lock:
            if self._active:
                return
            self._active = True
            self._write(_HIDE_CURSOR)
            if self._thread is None:
                self._thread = threading.Thread(target=self._refresh_loop, name="live-region", daemon=True)
                self._thread.start()
        self.touch()

    def stop(self) -> None:
        """Erase the region and leave the cursor at the start of an empty line; idempotent."""
        with self._lock:
            if not self._active:
                return
            self._write(self._erase() + _SHOW_CURSOR)
            self._height = 0
            self._active = False
            self._dirty = False  # nothing is pending for a region that is gone (a dirty stopped region spun)

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._closing = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)

    @property
    def active(self) -> bool:
        return self._active

    # -- output -------------------------------------------------------------------------------------

    def print(self, *renderables: Any) -> None:
        """Write finished lines above the region, once; the region is redrawn below them."""
        if not renderables:
            return
        text = "".join(self._render(item) for item in renderables)
        if self._on_print is not None:
            for item in renderables:
                self._on_print(item)
        if not self._active:
            self._write(text)
            return
        self._write(self._erase() + text + self._draw_region())

    def touch(self, *, now: bool = False) -> None:
        """The region changed: draw it now if the last draw is old enough, else soon."""
        if not self._active:
            return
        if now or time.monotonic() - self._last_draw >= self.min_interval:
            self.redraw()
        elif not self._dirty:  # the refresh thread is woken once per draw, not once per delta
            self._dirty = True
            self._wake.set()

    def set_animated(self, animated: bool) -> None:
        if animated and not self._animated:
            self._wake.set()
        self._animated = animated

    def redraw(self) -> None:
        if self._active:
            self._write(self._erase() + self._draw_region())

    # -- mechanics ----------------------------------------------------------------------------------

    def _erase(self) -> str:
        """Back to the region's first row and erase from there down: never above the region."""
        up = f"\x1b[{self._height - 1}A" if self._height > 1 else ""
        self._height = 0
        return "\r" + up + "\x1b[J"

    def _draw_region(self) -> str:
        self._dirty = False
        self._last_draw = time.monotonic()
        parts = self._region()
        if not parts:
            return ""
        lines = self._render(*parts).split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        rows = max(2, self.console.size.height)
        lines = lines[-(rows - 1):]  # never as tall as the screen: no row of it may scroll away
        self._height = len(lines)
        return "\n".join(lines)

    def _render(self, *renderables: Any) -> str:
        with self.console.capture() as capture:
            self.console.print(*renderables, sep="\n", soft_wrap=False, crop=True)
        return capture.get()

    def _write(self, text: str) -> None:
        if not text:
            return
        file = self.console.file
        file.write(text)
        file.flush()

    def _refresh_loop(self) -> None:
        while True:
            timeout: float | None = None  # stopped: sleep until start() or close() wakes it
            if self._dirty and self._active:
                timeout = max(0.0, self._last_draw + self.min_interval - time.monotonic())
            elif self._animated and self._active:
                timeout = max(0.0, self._last_draw + self.tick - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()
            with self._lock:
                if self._closing:
                    return
                if not self._active:
                    continue
                due = self._last_draw + (self.min_interval if self._dirty else self.tick)
                if (self._dirty or self._animated) and time.monotonic() >= due:
                    self.redraw()
