"""Opening something whole (a fold, the transcript): through the person's pager on a terminal, printed otherwise.

The pager is ``$PAGER``, else ``less -R`` when installed; ``LESS`` defaults to ``-R`` so colours
come through, and never to ``-X`` or ``-F``: less then draws on the terminal's alternate screen, and
``q`` gives back the screen, the scrollback and the prompt as they were. What fits on the screen
is printed without a pager. The program is looked up where midstream looks up its own programs
(sandbox/programs.py): never a ``less`` a command planted in the workspace. While the pager runs
it has the terminal: Ctrl-C is its to handle, not ours.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["page", "pager_command"]


def pager_command(environ: Mapping[str, str] | None = None) -> tuple[list[str] | None, str]:
    """The pager to run (None: print instead), and a line saying why not when $PAGER cannot be used."""
    from midstream.sandbox.programs import resolve

    wanted = (os.environ if environ is None else environ).get("PAGER", "").strip()
    try:
        argv = shlex.split(wanted) if wanted else ["less", "-R"]
    except ValueError:
        return None, f"PAGER={wanted!r} cannot be read as a command; printed here instead"
    if not argv:
        return None, ""
    program = argv[0] if "/" in argv[0] else resolve(argv[0])
    if program is None:
        return None, (f"the pager {argv[0]!r} (from $PAGER) is not installed; printed here instead" if wanted
                      else "")
    return [program, *argv[1:]], ""


def page(rows: list[Any], *, terminal: bool, say: Callable[[str, str], None], height: int | None = None) -> None:
    """Show ``rows`` (rich renderables) whole: paged on a terminal when they do not fit, else printed."""
    if not terminal:
        for row in rows:
            say(getattr(row, "plain", str(row)), str(getattr(row, "style", "")) or "none")
        return
    size = shutil.get_terminal_size((100, 24))
    text = _ansi(rows, size.columns)
    if text.count("\n") < (height or size.lines) - 1:
        _write(text)
        return
    argv, why = pager_command()
    if argv is None:
        if why:
            say(f"midstream: {why}", "yellow")
        _write(text)
        return
    environ = dict(os.environ)
    environ.setdefault("LESS", "-R")
    _run(argv, text, environ, say)


_SYSTEMS = {"standard": "STANDARD", "256": "EIGHT_BIT", "truecolor": "TRUECOLOR", "windows": "WINDOWS"}


def _ansi(rows: list[Any], columns: int) -> str:
    """The rows as lines with colour codes. A row in one style (nearly all) is written directly: rich's
    own printing takes seconds for a session of 100,000 lines; the pager or the terminal wraps."""
    from rich.color import ColorSystem
    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=max(20, columns - 1), highlight=False, soft_wrap=True)
    system = getattr(ColorSystem, _SYSTEMS.get(console.color_system or "", ""), None)
    around: dict[str, tuple[str, str]] = {}
    out: list[str] = []
    for row in rows:
        if not isinstance(row, Text) or row.spans or system is None:
            with console.capture() as captured:
                console.print(row)
            out.append(captured.get())
            continue
        name = str(row.style)
        if name not in around:
            style = console.get_style(name, default="none")
            prefix, _, suffix = style.render("\0", color_system=system).partition("\0")
            around[name] = (prefix, suffix)
        prefix, suffix = around[name]
        out.append(f"{prefix}{row.plain}{suffix}\n" if row.plain else "\n")
    return "".join(out)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _run(argv: list[str], text: str, environ: dict[str, str], say: Callable[[str, str], None]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    with _interrupts_to_the_pager():
        try:
            pager = subprocess.Popen(argv, stdin=subprocess.PIPE, env=environ)
        except OSError as error:
            say(f"midstream: cannot run the pager {argv[0]} ({error.strerror or error}); printed here instead",
                "yellow")
            _write(text)
            return
        assert pager.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError):  # q before the end: the rest is not wanted
            pager.stdin.write(text.encode("utf-8", "replace"))
        with contextlib.suppress(BrokenPipeError, OSError):
            pager.stdin.close()
        pager.wait()


@contextlib.contextmanager
def _interrupts_to_the_pager() -> Any:
    """Ctrl-C reaches the pager (less stops a search with it); midstream does not take it as its own.
    A handler that does nothing, not SIG_IGN: an ignored signal would stay ignored in the pager."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = signal.signal(signal.SIGINT, lambda number, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, kept)
