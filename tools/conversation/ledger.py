"""What the session has cost, counted once: every answered request, as its events pass to the renderer.

The loop's renderer is wrapped in a ``Ledger``; renderers and ``/cost`` read its totals (and each
``TurnEnded`` carries the message's), so no renderer counts tokens of its own. Every answered request,
the summary's included, is one ``RequestUsage``, priced by the model it names.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import replace

from midstream.tools.conversation.usage import Usage
from midstream.tools.events import Event, Renderer, RequestUsage, TurnEnded

__all__ = ["Ledger"]


class Ledger:
    """A renderer in front of the renderer: keeps the session's and the message's usage."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self.session = Usage()  # every request billed in this session
        self.message = Usage()  # ...and since the person's last message
        self._lock = threading.Lock()  # usage events come from the loop, summaries from /compact

    def show(self, event: Event) -> None:
        match event:
            case RequestUsage(model=model, usage=usage):
                self._add(Usage.billed(usage, model))
        self.renderer.show(event)

    def ended(self, ended: TurnEnded) -> TurnEnded:
        """``ended`` with this message's usage and the session's; the next message starts from zero."""
        with self._lock:
            message, self.message = self.message, Usage()
            session = replace(self.session)
        return replace(ended, usage=message, session=session)

    def say(self, text: str, style: str = "") -> None:
        self.renderer.say(text, style)

    def suspended(self) -> contextlib.AbstractContextManager[None]:
        return self.renderer.suspended()

    def close(self) -> None:
        self.renderer.close()

    def _add(self, billed: Usage) -> None:
        with self._lock:
            self.session += billed
            self.message += billed
