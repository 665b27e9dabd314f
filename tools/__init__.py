"""The tools the model can call: files.py, search.py and shell.py, their registry and scheduler.

The modules here are the tools (each a typed function the model sees), ``registry.py`` (schemas,
validation, errors as results) and ``scheduler.py`` (runs calls in parallel where they do not
conflict). What is not a tool lives in sub-packages named for what they hold:

- ``wire/``          the model service: HTTP, SSE, the turn assembler, record/replay
- ``conversation/``  what the API accepts as history, transcripts, prompt caching, token usage
- ``events.py``      the loop's vocabulary: the events it reports, the Renderer protocol
- ``ui/``            the terminal, plain-text and JSON renderers
- ``testing/``       scripted model servers on loopback, for ``--demo`` and the tests
- ``cli/``           the command line, the demo, the log file, the interactive prompt
- ``_package/``      the installed package's root (``midstream``): see its docstring

The repository's top level holds only agent.py, tools/, sandbox/, prompts/ and tests/, by the
user's choice; everything installs under the one name ``midstream`` (see pyproject.toml).
"""

from __future__ import annotations

from midstream.tools.registry import Tool, ToolRegistry

__all__ = ["builtin_tools", "default_registry"]


def builtin_tools() -> list[Tool]:
    from midstream.tools.files import edit_file, read_file, write_file
    from midstream.tools.search import glob, grep, list_dir
    from midstream.tools.shell import bash

    return [read_file, write_file, edit_file, list_dir, glob, grep, bash]


def default_registry() -> ToolRegistry:
    return ToolRegistry(builtin_tools())
