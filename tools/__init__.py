"""The tool families the model can call, collected into one registry."""

from __future__ import annotations

from tools.registry import Tool, ToolRegistry

__all__ = ["builtin_tools", "default_registry"]


def builtin_tools() -> list[Tool]:
    from tools.files import read_file

    return [read_file]


def default_registry() -> ToolRegistry:
    return ToolRegistry(builtin_tools())
