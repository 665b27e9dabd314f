"""Fixtures only: an isolated environment, a workspace, an agent factory. Shared helpers live in helpers.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from midstream.agent import Agent, AgentConfig
from midstream.tools.registry import ToolRegistry
from midstream.tools.testing.scripted_server import ScriptedServer

from tests.helpers import RecordingRenderer, recording_tool, watch_processes


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A home, state and config of its own for every test, and no model service settings."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL",
                 "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True, scope="session")
def sandbox_probed_once() -> None:
    """Whether bubblewrap works here is asked once a run (midstream caches it), before any test watches
    for the processes it starts: else the first in-process test to build an agent would start the probe."""
    from midstream.sandbox.isolation import probe

    probe()


@pytest.fixture(autouse=True)
def process_marker_is_honest(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test that starts real processes must say so, so that `-m "not process"` stays the in-process part."""
    if request.node.get_closest_marker("process"):
        yield
        return
    started: list[str] = []
    watch_processes(monkeypatch, started)
    yield
    assert not started, f"this test starts real processes; mark it @pytest.mark.process: {started}"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace folder."""
    root = tmp_path / "ws"
    root.mkdir()
    return root


@pytest.fixture
def make_agent(workspace: Path) -> Iterator[Callable[..., tuple[Agent, RecordingRenderer]]]:
    """A factory of agents in ``workspace`` against a scripted server, closed after the test."""
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
