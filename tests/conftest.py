"""Shared fixtures: an isolated environment, a recording renderer, test tools that log their order."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from midstream.agent import Agent, AgentConfig
from midstream.tools.events import Event
from midstream.tools.registry import Access, ToolContext, ToolError, ToolRegistry, Wording, tool
from midstream.tools.testing.scripted_server import ScriptedServer


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL",
                 "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)


def program_env(**extra: str) -> dict[str, str]:
    """The environment for running midstream as a process: ours without any ANTHROPIC_* or OPENAI_*
    setting, so nothing can reach a real model service, plus ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_"))} | extra


class RecordingRenderer:
    """Keeps every event; optionally mirrors tool starts into a shared order log."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def show(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.002)
    return condition()


def recording_tool(log: list[str]):
    """A tool that writes start:/end: lines into ``log`` and can wait for another call to start."""

    def access(workspace: Path, args: dict[str, Any]) -> Access:
        if args.get("writes"):
            return Access.writing(args["writes"])
        return Access.reading(args.get("reads") or args.get("label", "?"))

    @tool(wording=Wording("Recording", "Recorded", target="label"), access=access)
    def record(
        ctx: ToolContext,
        label: str,
        reads: str = "",
        writes: str = "",
        wait_for: str = "",
        wait_seconds: float = 5.0,
        fail: bool = False,
    ) -> str:
        """Record this call's start and end in the test's order log."""
        log.append(f"start:{label}")
        if wait_for:
            wait_until(lambda: f"start:{wait_for}" in log, wait_seconds)
        log.append(f"end:{label}")
        if fail:
            raise ToolError(f"{label} failed on purpose")
        return f"recorded {label}"

    return record


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


@pytest.fixture
def make_agent(workspace: Path) -> Iterator[Callable[..., tuple[Agent, RecordingRenderer]]]:
    agents: list[Agent] = []

    def make(server: ScriptedServer, *, tools: ToolRegistry | None = None, transcript: Any = None, **overrides: Any):
        from midstream.tools import builtin_tools

        settings: dict[str, Any] = dict(
            workspace=workspace, base_url=server.url, api_key="sk-test", model="claude-test",
            system_prompt="You are a test.", backoff_base=0.01, backoff_max=0.05,
            # The engine's tests compare requests to the exact history; caching and the date note
            # have tests of their own (test_prompts_and_cache.py).
            prompt_cache=False, tell_date=False,
        )
        settings.update(overrides)
        renderer = RecordingRenderer()
        agent = Agent(
            AgentConfig(**settings),
            tools=tools or ToolRegistry([*builtin_tools(), recording_tool(server.log)]),
            renderer=renderer,
            transcript=transcript,
        )
        agents.append(agent)
        return agent, renderer

    yield make
    for agent in agents:
        agent.close()
