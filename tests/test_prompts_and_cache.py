"""System prompt templates, project instructions, cache breakpoints and the cache audit."""

from __future__ import annotations

import copy
import subprocess

import pytest
from midstream.prompts import build_system_blocks, date_note, instruction_files, render_template
from midstream.tools.conversation.cache import apply_cache_control
from midstream.tools.conversation.tokens import estimate_tokens
from midstream.tools.conversation.usage import Usage
from midstream.tools.events import CacheMissed, TurnCommitted
from midstream.tools.testing.cache_model import CacheModel
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import LONG_SYSTEM


def test_templates_are_filled_strictly():
    with pytest.raises(KeyError):
        render_template("instructions", path="AGENTS.md")  # no content
    assert "Root: /x" in render_template("workspace", root="/x", platform="Linux", git="no", status="")


def test_instruction_files_from_the_git_root_down_and_the_person_s_own(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    workspace = repo / "services" / "api"
    workspace.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "AGENTS.md").write_text("root agents")
    (repo / "CLAUDE.md").write_text("root claude")
    (repo / "services" / "AGENTS.md").write_text("services agents")
    (workspace / "CLAUDE.md").write_text("api claude")
    (tmp_path / "AGENTS.md").write_text("outside the repository: never read")
    config = tmp_path / "config"
    (config / "midstream").mkdir(parents=True)
    (config / "midstream" / "AGENTS.md").write_text("my own preferences")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    found = instruction_files(workspace)
    assert found == [config / "midstream" / "AGENTS.md", repo / "AGENTS.md", repo / "CLAUDE.md",
                     repo / "services" / "AGENTS.md", workspace / "CLAUDE.md"]
    blocks = build_system_blocks(workspace)
    texts = [b["text"] for b in blocks]
    assert texts[0].startswith("You are midstream")
    assert f"Root: {workspace}" in texts[1] and "a git repository" in texts[1]
    assert [t.splitlines()[0] for t in texts[2:]] == [f"# Instructions from {p}" for p in found]
    assert "my own preferences" in texts[2] and "api claude" in texts[-1]
    assert build_system_blocks(workspace) == blocks  # stable: nothing volatile in the cached prefix
    assert "date" not in " ".join(texts).lower()


def test_outside_git_only_the_workspace_is_searched(tmp_path):
    (tmp_path / "AGENTS.md").write_text("parent")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "AGENTS.md").write_text("here")
    assert instruction_files(workspace) == [workspace / "AGENTS.md"]
    assert "not a git repository" in build_system_blocks(workspace)[1]["text"]



def test_a_repository_s_instruction_file_cannot_lead_outside_it(tmp_path):
    """A hostile repository's AGENTS.md -> ~/.aws/credentials must not send the credentials to the model."""
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = hunter2")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)
    (workspace / "AGENTS.md").symlink_to(secret)
    (workspace / "real.md").write_text("be brief")
    (workspace / "CLAUDE.md").symlink_to("real.md")  # a link that stays inside is fine
    assert instruction_files(workspace) == [workspace / "CLAUDE.md"]
    assert "hunter2" not in str(build_system_blocks(workspace))


def _body(messages):
    return {"model": "m", "tools": [{"name": "a"}, {"name": "b"}], "system": [{"type": "text", "text": "s"}],
            "messages": messages}


def test_breakpoints_go_after_tools_system_and_on_the_tail():
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "a", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "done"}]},
        {"role": "user", "content": [{"type": "text", "text": "next"}]},
    ]
    original = copy.deepcopy(messages)
    body = apply_cache_control(_body(messages))
    marked = [(where, i) for where, items in (("tools", body["tools"]), ("system", body["system"]))
              for i, item in enumerate(items) if "cache_control" in item]
    marked += [("message", i) for i, m in enumerate(body["messages"]) if "cache_control" in m["content"][-1]]
    assert marked == [("tools", 1), ("system", 0), ("message", 2), ("message", 4)]
    assert messages == original  # history is never touched
    assert apply_cache_control(_body(messages), "1h")["tools"][-1]["cache_control"] == {"type": "ephemeral",
                                                                                          "ttl": "1h"}


def test_the_cache_model_follows_the_documented_accounting():
    now = [0.0]
    cache = CacheModel(clock=lambda: now[0])
    long = {"role": "user", "content": [{"type": "text", "text": "x" * 8000}]}
    first = cache.usage(apply_cache_control(_body([long])))
    assert first["cache_read_input_tokens"] == 0 and first["cache_creation_input_tokens"] > 2000
    second = cache.usage(apply_cache_control(_body([long])))
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    now[0] = 301.0  # past the 5-minute TTL
    assert cache.usage(apply_cache_control(_body([long])))["cache_read_input_tokens"] == 0
    short = {"role": "user", "content": [{"type": "text", "text": "too short to cache"}]}
    assert cache.usage(apply_cache_control(_body([short])))["cache_creation_input_tokens"] == 0
    assert estimate_tokens({"type": "text", "text": "abcd" * 100}) == 107  # 426 characters of JSON


def _session(make_agent, turns: int, *, cache: bool = True, change_system_at: int | None = None,
             parallel: int = 1):
    replies = []
    for turn in range(turns):
        calls = [ToolUse(f"t{turn}_{i}", "record", {"label": f"{turn}-{i}"}) for i in range(parallel)]
        replies += [reply(Text(f"Working on step {turn}.\n"), *calls), reply(Text(f"Step {turn} done."))]
    server = ScriptedServer(replies, cache=CacheModel())
    with server:
        agent, renderer = make_agent(server, system_prompt=LONG_SYSTEM, prompt_cache=cache)
        for turn in range(turns):
            if turn == change_system_at:
                agent.system = [{"type": "text", "text": LONG_SYSTEM + "\nOne more rule."}]
            assert agent.send(f"Do step {turn}.").ok
    return [Usage.from_api(e.usage) for e in renderer.of(TurnCommitted)], renderer, server


def test_a_ten_turn_session_reads_the_cache_on_every_request_after_the_first(make_agent):
    usages, renderer, server = _session(make_agent, 10)
    assert len(usages) == 20
    assert usages[0].hit_ratio == 0.0 and usages[0].cache_write > 6000
    ratios = [u.hit_ratio for u in usages[1:]]
    assert min(ratios) >= 0.9, ratios
    assert not renderer.of(CacheMissed)


def test_a_turn_with_many_parallel_calls_still_reads_the_cache(make_agent):
    usages, _, _ = _session(make_agent, 3, parallel=15)  # 30 new blocks a turn: past the 20-block lookback
    assert min(u.hit_ratio for u in usages[1:]) >= 0.9


def test_changing_the_system_prompt_is_reported_once(make_agent):
    usages, renderer, _ = _session(make_agent, 4, change_system_at=2)
    missed = renderer.of(CacheMissed)
    assert len(missed) == 1 and "the system prompt changed" in missed[0].message
    assert usages[4].hit_ratio < 0.5 and usages[5].hit_ratio >= 0.9


def test_without_breakpoints_nothing_is_cached(make_agent):
    usages, _, server = _session(make_agent, 2, cache=False)
    assert all(u.cache_read == 0 and u.cache_write == 0 for u in usages)
    assert "cache_control" not in str(server.requests[-1]["body"])


def test_the_date_is_told_once_in_a_user_message(make_agent):
    server = ScriptedServer([reply(Text("a")), reply(Text("b"))])
    with server:
        agent, _ = make_agent(server, tell_date=True)
        agent.send("first")
        agent.send("second")
    first, _, second = server.requests[1]["body"]["messages"]
    assert first["content"][0]["text"] == date_note() and len(second["content"]) == 1
    assert date_note() not in str(server.requests[0]["body"]["system"])
