"""The interactive session: the prompt, turns with Esc watched, slash commands, questions to the person."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from midstream.agent import Agent
from midstream.tools.cli import sessions, slash
from midstream.tools.cli.attach import Pastes, attach_mentions
from midstream.tools.cli.typeahead import TypeAhead
from midstream.tools.conversation.transcript import SessionInUse
from midstream.tools.events import Renderer, TurnEnded
from midstream.tools.questions import Asker, Question
from midstream.tools.ui.sanitise import shown

if TYPE_CHECKING:
    from midstream.tools.ui.folds import Folds
    from rich.text import Text

__all__ = ["Interactive", "confirmer"]

T = TypeVar("T")


class Interactive:
    """One person at a terminal: reads messages, runs turns, catches commands."""

    def __init__(self, agent: Agent, renderer: Renderer, keys: TypeAhead, folds: Folds | None = None) -> None:
        self.agent = agent
        self.folds = folds  # what the terminal folded, for /show, /diff and Ctrl-O
        self.renderer = renderer
        self.keys = keys
        self.pastes = Pastes()  # folded pastes, typed at the prompt or during a turn
        keys.fold = self.pastes.fold
        self.shell_notes: list[str] = []  # `!command` outputs the model gets with the next message
        self._queued: list[str] = []  # whole lines typed while the model worked
        self._prefill = ""  # and the unfinished one
        self._leaving = False  # ...and Ctrl-D after them
        self._waiting = threading.Event()  # set while a Ctrl-C outside a turn has something to stop
        self.open_web: Callable[[], str] | None = None  # starts the browser view, says where (/web)
        self.terminal = False  # a terminal we may draw on: /resume's picker, a pager for /show and /transcript

    def waiting_for_person(self) -> bool:
        """Is the session at the prompt, or in a wait a Ctrl-C should end? (Else a press is dropped.)"""
        return self._waiting.is_set()

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        self._waiting.set()
        try:
            yield
        finally:
            self._waiting.clear()

    def page(self, rows: list[Text]) -> None:
        """Rows of our own opened whole (a fold, the transcript): in a pager on a terminal, else printed."""
        from midstream.tools.ui.pager import page

        page(rows, terminal=self.terminal, say=lambda text, style: self.renderer.say(text, style=style))

    def say(self, text: str, style: str = "bold cyan") -> None:
        """A line of the program's own, above the live region where there is one."""
        self.renderer.say(text, style=style or "none")

    def typed_ahead(self, data: bytes) -> None:
        """Keys typed before the first prompt (read while start-up asked the terminal its colours): whole
        lines are sent first, in order, the rest waits in the prompt."""
        self.keys.feed(data)
        while (line := self.keys.next_message()) is not None:
            self._queued.append(line)
        self._prefill = self.keys.leftover()

    def turn(self, run: Callable[[], T]) -> T:
        """Run one turn (or /compact's request) with Esc watched; keep what the person typed meanwhile."""
        if self._prefill:  # typed ahead before this turn and not sent: still being typed
            self.keys.typed, self._prefill = self._prefill, ""
        with self.keys.capturing():
            ended = run()
        while (line := self.keys.next_message()) is not None:
            self._queued.append(line)
        self._prefill = self.keys.leftover()
        if self._queued and getattr(ended, "stop_reason", None) == "interrupted":
            # Stopped by the person: what they queued is not sent behind their back; it waits in the
            # prompt, to send, edit or drop (Esc Esc).
            self._prefill = "\n".join([*self._queued, self._prefill]).strip("\n")
            self._queued = []
        if self.keys.take_eof() and not self._prefill.strip():
            self._leaving = True  # Ctrl-D on an empty line, typed ahead: leave once the lines before it ran
        return ended

    def send(self, text: str) -> TurnEnded:
        text, notes = attach_mentions(self.pastes.expand(text), self.agent.config.workspace)
        for note in notes:
            self.say(note, style="dim")
        if self.shell_notes:
            text = "\n\n".join([*self.shell_notes, text])
            self.shell_notes = []
        return self.turn(lambda: self.agent.send(text))

    def resume(self, session_id: str | None) -> None:
        """Switch to another session of this workspace: the given one, or one the person picks."""
        workspace = self.agent.config.workspace
        if session_id:
            path = sessions.find(workspace, session_id)
            if path is None:
                self.say(f"no session {session_id} for {workspace}")
                return
        else:
            here = self.agent.transcript.path if self.agent.transcript else None
            try:
                with self.interruptible():
                    path = sessions.choose(workspace, _ask, self.say, terminal=self.terminal, leave_out=here)
            except (sessions.Cancelled, KeyboardInterrupt):
                self.say("no session resumed; still in this one", style="dim")
                return
            if path is None:
                return
        if self.agent.transcript and path == self.agent.transcript.path:
            self.say("that is the session you are in")
            return
        try:  # the lock is taken before the session we are in is let go: refused, we stay in it
            transcript, history, crashed = sessions.open_session(path)
        except SessionInUse as error:
            self.say(str(error))
            return
        except OSError as error:  # gone or turned into something else since it was listed: we stay here
            self.say(f"cannot open session {path.stem}: {error.strerror or error}; still in this one")
            return
        self.agent.start_over(history, transcript)
        if crashed:
            self.say(crashed)
        self.say(sessions.resumed_notice(transcript, history))

    def run(self, first_message: str | None) -> int:
        from midstream.tools.cli.prompt import Prompt

        if first_message and first_message.strip():
            self.say(f"› {first_message}", style="bold")  # the task in the scrollback, as if typed
            self.send(first_message)
        commands = {name: command.help for name, command in slash.COMMANDS.items()}
        prompt = Prompt(self.agent.config.workspace, self.pastes, commands)
        while True:
            if self._queued:
                text: str | None = self._queued.pop(0)
                self.say(f"› {text}  (queued)", style="bold")  # typed during the last turn, sent now
            elif self._leaving:
                return 0
            else:
                prefill, self._prefill = self._prefill, ""
                with self.interruptible():
                    text = prompt.read(prefill)
            if text is None:
                return 0
            if slash.is_command(text):
                if slash.dispatch(self, text) == slash.LEAVE:
                    return 0
                continue
            self.send(text)


def _ask(question: str) -> str | None:
    try:
        return input(question)
    except (EOFError, KeyboardInterrupt):
        print()
        return None


def confirmer(renderer: Renderer, on_escape: Callable[[], None] | None = None) -> Asker:
    """Ask on the terminal from a worker thread until the question is closed: answered here, answered
    in another surface (the browser view), or given up when Ctrl-C sets ``cancelled``.

    The answer is a line (``y``, ``yes``, ``a`` … then Enter); Esc answers "no" at once and calls
    ``on_escape``, which stops the turn, so no further question follows (as in Claude Code and Codex).
    The renderer's ``suspended()`` also hands the terminal back from the type-ahead while the
    question is open: the type-ahead registers itself among its suspend hooks.
    """
    def confirm(question: Question, cancelled: threading.Event) -> None:
        with renderer.suspended():
            sys.stderr.write(f"{shown(question.text, one_line=True)} [y]es / [n]o / [a]lways this session: ")
            sys.stderr.flush()
            line = _read_answer(cancelled, question)
            if question.closed:  # answered in another surface first: say so, and what
                sys.stderr.write(f"{chr(10) if line else ''}{question.answer} (answered in the {question.by})\n")
                sys.stderr.flush()
                return
            if line is None:  # Esc
                question.give("no", "terminal")
                sys.stderr.write("no (Esc: the turn stops)\n")
                sys.stderr.flush()
                if on_escape is not None:
                    on_escape()
                    # Hold the question's turn until the stop reached the calls: a call waiting to ask
                    # next then finds itself cancelled, and is never asked.
                    cancelled.wait(2.0)
                    time.sleep(0.02)
                return
            sys.stderr.write("\n")
            sys.stderr.flush()
            if not cancelled.is_set():
                question.give({"y": "yes", "yes": "yes", "a": "always", "always": "always"}.get(
                    line.strip().lower(), "no"), "terminal")

    return confirm


def _read_answer(cancelled: threading.Event, question: Question) -> str | None:
    """A line typed on stdin, echoed as it is typed; None for Esc; what was typed so far once
    ``cancelled`` is set or the question is answered elsewhere."""
    fd = sys.stdin.fileno()
    with _keys_mode(fd) as keys:
        typed = ""
        while not cancelled.is_set() and not question.closed:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            data = os.read(fd, 1024)
            if not data:
                return typed
            if not keys:  # no terminal: a line as it comes
                return data.decode(errors="replace").splitlines()[0] if data.strip() else ""
            text = data.decode(errors="replace")
            if text == "\x1b":  # Esc alone in a read; an arrow key is longer
                return None
            for char in text:
                if char in "\r\n":
                    return typed
                if char in "\x7f\b":
                    if typed:
                        typed = typed[:-1]
                        sys.stderr.write("\b \b")
                elif char >= " " and char != "\x1b":
                    typed += char
                    sys.stderr.write(char)
            sys.stderr.flush()
        return typed


@contextlib.contextmanager
def _keys_mode(fd: int) -> Iterator[bool]:
    """Keys one by one, not echoed by the terminal (we echo), Ctrl-C still a signal; False: no terminal."""
    try:
        saved = termios.tcgetattr(fd)
    except (termios.error, ValueError, OSError):
        yield False
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ICANON | termios.ECHO | termios.IEXTEN)
    quiet[6] = list(saved[6])
    quiet[6][termios.VMIN], quiet[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
