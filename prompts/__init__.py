"""System prompt templates (Markdown), filled strictly: a missing variable is an error."""

from __future__ import annotations

import platform
from importlib import resources
from pathlib import Path
from string import Template

__all__ = ["build_system_prompt", "render_template"]


def render_template(name: str, **values: str) -> str:
    """Fill ``prompts/<name>.md``; ``Template.substitute`` raises KeyError on a missing variable."""
    text = resources.files(__package__).joinpath(f"{name}.md").read_text(encoding="utf-8")
    return Template(text).substitute(values)


def build_system_prompt(workspace: Path) -> str:
    return render_template("system", workspace=str(workspace), platform=platform.system())
