"""The live status line of a turn, and the one line that stands for its retries.

``✻ Working… 12 s · ↑ 1.2k · ↓ 340 tokens · esc to interrupt`` sits at the foot of the live region
while a message is being worked on (never printed: it goes with the region). Output tokens are
counted from the usage of finished requests plus about a token per four characters streamed in
the current one; input tokens from the requests' usage once it is known.

Retries that lost nothing the person saw (no text streamed, nothing undone) are one line that
updates in place, ``↺ HTTP 529 overloaded · retrying in 4 s (attempt 3/5)``; once the reply comes
through (or the loop gives up) a single line is printed for all of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from midstream.tools.events import TurnRolledBack

__all__ = ["Retrying", "WorkStatus", "tokens"]


def tokens(count: int) -> str:
    """``340``, ``1.2k``, ``15k``."""
    if count < 1000:
        return str(count)
    return f"{count / 1000:.1f}k" if count < 10_000 else f"{count // 1000}k"


@dataclass
class Retrying:
    """The latest of a run of quiet rollbacks."""

    reason: str
    attempt: int  # the attempt that will run next
    max_attempts: int
    due: float  # monotonic time of the next attempt
    count: int = 1

    def row(self, now: float) -> str:
        left = max(0.0, self.due - now)
        when = f"retrying in {left:.0f} s" if left >= 0.5 else "retrying now"
        return f"↺ {self.reason} · {when} (attempt {self.attempt}/{self.max_attempts})"

    def summary(self) -> str:
        return f"↺ {self.reason} · retried {self.count} time{'s' * (self.count != 1)}"


class WorkStatus:
    """What the status line counts for the message being worked on."""

    def __init__(self, interrupt_key: str = "esc") -> None:
        self.interrupt_key = interrupt_key
        self.started: float | None = None
        self.input = 0  # tokens sent, as the finished requests' usage says
        self.output = 0  # tokens received in finished requests
        self._streaming = 0  # characters of the current request
        self.retrying: Retrying | None = None

    def request_started(self) -> None:
        self.started = self.started or time.monotonic()
        self._streaming = 0

    def streamed(self, text: str) -> None:
        self._streaming += len(text)

    def billed(self, usage: dict) -> None:
        self.input += sum(int(usage.get(key) or 0) for key in
                          ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))
        self.output += int(usage.get("output_tokens") or 0)
        self._streaming = 0

    def rolled_back(self, event: TurnRolledBack, *, quiet: bool) -> str | None:
        """A rollback: kept on the updating line when ``quiet`` and a retry follows; else the line to print
        for the run of quiet ones before it, if any."""
        if quiet and event.retry_in is not None:
            count = self.retrying.count + 1 if self.retrying else 1
            self.retrying = Retrying(event.reason, event.attempt + 1, event.max_attempts,
                                     time.monotonic() + event.retry_in, count)
            return None
        return self.came_through()

    def came_through(self) -> str | None:
        """The reply started (or the turn ended): the one line that stands for the retries, if any."""
        retrying, self.retrying = self.retrying, None
        return retrying.summary() if retrying else None

    def ended(self) -> None:
        self.started, self.input, self.output, self._streaming, self.retrying = None, 0, 0, 0, None

    def row(self, now: float, spinner: str) -> str | None:
        if self.started is None:
            return None
        down = self.output + self._streaming // 4
        up = f" · ↑ {tokens(self.input)}" if self.input else ""
        return (f"{spinner} Working… {now - self.started:.0f} s{up} · ↓ {tokens(down)} tokens · "
                f"{self.interrupt_key} to interrupt")
