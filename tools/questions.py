"""Questions to the person as objects any surface can answer: the terminal, every browser tab.

The Gate asks through ``Questions.ask(text, cancelled)`` (its ``confirm``). That makes a
``Question``, tells every surface (``QuestionAsked`` through the renderer, so the terminal, the
JSON lines and the browser view all see it), lets the terminal ask it in this thread if there is
one, and waits for the first answer from anywhere. The first answer wins: ``Question.answer`` is
atomic, later ones are refused. Whoever answered, every surface is then told ``QuestionClosed`` and
closes its copy. Ctrl-C, Esc or the page's stop button set ``cancelled``, which answers "no".
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from midstream.tools.events import Event, QuestionAsked, QuestionClosed, ToolAsking

__all__ = ["ANSWERS", "Question", "Questions"]

ANSWERS = ("yes", "no", "always")
_ids = itertools.count(1)


@dataclass
class Question:
    """One open question; ``answer`` is the first answer given, ``by`` who gave it."""

    text: str
    call_id: str = ""
    id: str = field(default_factory=lambda: f"q{next(_ids)}")
    answer: str | None = None
    by: str = ""
    _closed: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def give(self, answer: str, by: str) -> bool:
        """Answer it; False (and nothing changes) when someone answered first or the answer is not one."""
        if answer not in ANSWERS:
            return False
        with self._lock:
            if self._closed.is_set():
                return False
            self.answer, self.by = answer, by
            self._closed.set()
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until answered (True) or until ``timeout`` passes (False)."""
        return self._closed.wait(timeout)


# A surface that asks in the asking thread (the terminal): it returns once the question is closed
# by anyone or ``cancelled`` is set, having called ``question.give`` if the person answered there.
Asker = Callable[[Question, threading.Event], None]


class Questions:
    """The open questions of a session, and the surfaces that answer them."""

    def __init__(self, show: Callable[[Event], None], terminal: Asker | None = None) -> None:
        self._show = show
        self.terminal = terminal
        self._open: dict[str, Question] = {}
        self._lock = threading.Lock()
        self._asking_call: dict[int, str] = {}  # thread -> the call its ToolAsking announced

    def observe(self, event: Event) -> None:
        """A listener on the loop's events: remembers which call the Gate is about to ask about.

        The Gate announces ``ToolAsking`` and then calls ``ask`` in the same worker thread, so the
        thread's last ToolAsking names the question's call.
        """
        if isinstance(event, ToolAsking):
            with self._lock:
                self._asking_call[threading.get_ident()] = event.id

    def pending(self) -> list[Question]:
        with self._lock:
            return list(self._open.values())

    def answer(self, question_id: str, answer: str, by: str) -> bool:
        """Answer an open question from any surface; False when it is closed, unknown or the answer is not one."""
        with self._lock:
            question = self._open.get(question_id)
        return question is not None and question.give(answer, by)

    def ask(self, text: str, cancelled: threading.Event) -> str:
        """The Gate's ``confirm``: "yes", "no" or "always", whichever surface answers first; "no" on cancel."""
        with self._lock:
            call_id = self._asking_call.pop(threading.get_ident(), "")
            question = Question(text, call_id)
            self._open[question.id] = question
        self._show(QuestionAsked(question.id, call_id, text, ANSWERS))
        try:
            if self.terminal is not None:
                self.terminal(question, cancelled)
            while not question.closed and not cancelled.is_set():
                question.wait(0.05)
        finally:
            question.give("no", "cancelled")  # a no-op when it was answered
            with self._lock:
                self._open.pop(question.id, None)
            self._show(QuestionClosed(question.id, call_id, question.answer or "no", question.by))
        return question.answer or "no"
