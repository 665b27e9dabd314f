"""The prompt's keys and Tab completion (prompt_toolkit's side of tools/cli/prompt.py).

Imported only when the first prompt is drawn: everything here needs prompt_toolkit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prompt_toolkit.completion import CompleteEvent, Completion
from prompt_toolkit.completion import Completer as _Base
from prompt_toolkit.document import Document
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.keys import Keys

if TYPE_CHECKING:
    from midstream.tools.cli.prompt import Prompt

__all__ = ["Completer", "key_bindings"]

MAX_PATHS = 200


class Completer(_Base):
    """``/commands`` at the start of the line; paths for a word after ``@`` or one with a ``/`` in it."""

    def __init__(self, workspace: Path, commands: dict[str, str]) -> None:
        self.workspace = workspace.resolve()
        self.commands = commands

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        before = document.text_before_cursor
        if before.startswith("/") and " " not in before and "\n" not in before:
            for name, help_line in self.commands.items():
                if ("/" + name).startswith(before.lower()):
                    yield Completion("/" + name, start_position=-len(before), display_meta=help_line)
            return
        word = document.get_word_before_cursor(WORD=True)
        if word.startswith("@"):
            yield from self._paths(word[1:])
        elif "/" in word or word.startswith("."):
            yield from self._paths(word)

    def _paths(self, typed: str) -> Iterator[Completion]:
        folder, _, prefix = typed.rpartition("/")
        base = (self.workspace / folder).resolve() if folder else self.workspace
        try:
            base.relative_to(self.workspace)  # completion lists nothing outside the workspace
            entries = sorted(os.scandir(base), key=lambda entry: entry.name)
        except (ValueError, OSError):
            return
        shown = 0
        for entry in entries:
            if not entry.name.startswith(prefix) or entry.name == ".git":
                continue
            if entry.name.startswith(".") and not prefix.startswith("."):
                continue
            folder_mark = "/" if entry.is_dir(follow_symlinks=False) else ""
            yield Completion(entry.name + folder_mark, start_position=-len(prefix), display=entry.name + folder_mark)
            shown += 1
            if shown >= MAX_PATHS:
                return


def key_bindings(prompt: Prompt) -> KeyBindings:
    """Enter, Alt-Enter, Esc, a bracketed paste, Ctrl-O and Ctrl-C as prompt.py's docstring says."""
    keys = KeyBindings()

    @keys.add("enter")
    def _enter(event: Any) -> None:
        buffer = event.current_buffer
        if buffer.complete_state and buffer.complete_state.current_completion is not None:
            buffer.complete_state = None  # Enter on a chosen completion takes it...
            if not buffer.text.startswith("/"):
                return  # ...and a path is part of a message still being typed; a /command runs now
        before = buffer.document.text_before_cursor
        if before.endswith("\\") and buffer.document.is_cursor_at_the_end:
            buffer.delete_before_cursor(1)
            buffer.insert_text("\n")
            return
        buffer.validate_and_handle()

    @keys.add("c-j")
    def _line_feed(event: Any) -> None:  # a pty's "\n" (and some terminals' Enter): as Enter
        _enter(event)

    @keys.add("escape", eager=True)
    def _escape(event: Any) -> None:
        queue = event.key_processor.input_queue
        if queue and queue[0].key in (Keys.ControlM, Keys.ControlJ):  # Alt-Enter: both in one read
            queue.popleft()
            event.current_buffer.insert_text("\n")
            return
        prompt.escape(event.current_buffer)

    @keys.add("tab")
    def _tab(event: Any) -> None:
        # Computed here, synchronously: prompt_toolkit's own Tab completes in a task, so a key typed
        # right after Tab (Enter) could be handled before the completion landed.
        buffer = event.current_buffer
        if buffer.complete_state:
            buffer.complete_next()
            return
        found = list(buffer.completer.get_completions(buffer.document, CompleteEvent(completion_requested=True)))
        if len(found) == 1:
            buffer.delete_before_cursor(-found[0].start_position)
            buffer.insert_text(found[0].text)
            return
        if found:
            typed = buffer.document.text_before_cursor[len(buffer.document.text_before_cursor)
                                                        + found[0].start_position:]
            common = os.path.commonprefix([c.text for c in found])
            if all(c.start_position == found[0].start_position for c in found) and common.startswith(typed):
                buffer.insert_text(common[len(typed):])
            buffer.start_completion(insert_common_part=False)

    @keys.add(Keys.BracketedPaste)
    def _paste(event: Any) -> None:
        event.current_buffer.insert_text(prompt.pastes.fold(event.data))

    @keys.add("c-o")
    def _unfold(event: Any) -> None:
        buffer = event.current_buffer
        if not buffer.text:  # on an empty line: the last fold, whole (as /show; not put in the history)
            prompt.by_key = True
            event.app.erase_when_done = True  # the empty prompt line goes: after the pager, one prompt again
            event.app.exit(result="/show")
            return
        if prompt.pastes.folded(buffer.text):
            buffer.text = prompt.pastes.expand(buffer.text)
            buffer.cursor_position = len(buffer.text)

    @keys.add("c-c")
    def _interrupt(event: Any) -> None:
        buffer = event.current_buffer
        if buffer.text:
            buffer.reset()
            return
        event.app.exit(exception=KeyboardInterrupt())

    return keys
