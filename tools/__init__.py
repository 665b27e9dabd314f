"""What the loop in agent.py drives: the tools the model can call, and the parts around them.

The tool families (files.py, search.py, shell.py) are collected into one registry here. Beside
them live the model wire (model.py, sse.py), the assembler, the scheduler, the renderers
(terminal.py, render.py), transcripts, logs, caching, the command line (cli.py) and the scripted
model server the demo and the tests use (scripted_server.py): the project's top level holds only
agent.py, tools/, sandbox/, prompts/ and tests/, by the user's choice.
"""

from __future__ import annotations

from tools.registry import Tool, ToolRegistry

__all__ = ["builtin_tools", "default_registry"]


def builtin_tools() -> list[Tool]:
    from tools.files import edit_file, read_file, write_file
    from tools.search import glob, grep, list_dir
    from tools.shell import bash

    return [read_file, write_file, edit_file, list_dir, glob, grep, bash]


def default_registry() -> ToolRegistry:
    return ToolRegistry(builtin_tools())
