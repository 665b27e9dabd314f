"""The tool families the model can call, collected into one registry."""

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
