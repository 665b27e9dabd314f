"""MCP tools through the real loop: the SDK-written test server (stdio and Streamable HTTP) against
the scripted model server. What the MCP server received is read from its own log."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from midstream.agent import Agent, AgentConfig
from midstream.tools import builtin_tools
from midstream.tools.cli.interrupts import interrupt_turn
from midstream.tools.events import ToolFinished, ToolProgress, TurnRolledBack
from midstream.tools.mcp.config import ServerSpec
from midstream.tools.registry import ToolRegistry
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import RecordingRenderer, wait_until
from tests.mcp_helpers import calls, server_processes, spec_for, started, stdio_spec

pytestmark = pytest.mark.process

TRANSPORTS = ["stdio", "http"]


@pytest.fixture
def mcp(tmp_path: Path):
    made = []

    def make(*specs: ServerSpec, said: list[str] | None = None, **options):
        servers = started(list(specs), tmp_path, said if said is not None else [], **options)
        made.append(servers)
        return ToolRegistry(builtin_tools(), [servers]), servers

    yield make
    for servers in made:
        servers.close()


def results(request: dict) -> list[dict]:
    return [b for b in request["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_call_starts_mid_stream_before_message_stop(transport, tmp_path, mcp, make_agent):
    log = tmp_path / "server.log"
    with spec_for(transport, log) as spec:
        tools, _ = mcp(spec)
        arrived: list[bool] = []
        first = reply(ToolUse("t1", "mcp__t__echo", {"text": "hi"}), Text("and more text", chunk=3))
        first["events"][-1]["_before"] = lambda: arrived.append(wait_until(lambda: "call echo" in calls(log), 20))
        server = ScriptedServer([first, reply(Text("done"))])
        with server:
            agent, _ = make_agent(server, tools=tools)
            assert agent.send("go").ok
    assert arrived == [True]  # the server had the call before message_stop was sent
    (echoed,) = results(server.requests[1])
    assert echoed["content"].startswith("hi\n[the above is content from MCP server 't', tool 'echo'")
    assert "mcp__t__echo" in [t["name"] for t in server.requests[0]["body"]["tools"]]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_progress_notifications_are_the_calls_progress_events(transport, tmp_path, mcp, make_agent):
    with spec_for(transport, tmp_path / "server.log", "--step", "0.05") as spec:
        tools, _ = mcp(spec)
        server = ScriptedServer([reply(ToolUse("t1", "mcp__t__slow", {"n": 3})), reply(Text("done"))])
        with server:
            agent, renderer = make_agent(server, tools=tools)
            assert agent.send("go").ok
    lines = [e.line for e in renderer.events if isinstance(e, ToolProgress)]
    assert lines == ["indexing 1/3 (33%)", "indexing 2/3 (67%)", "indexing 3/3 (100%)"]
    kinds = [type(e).__name__ for e in renderer.events if getattr(e, "id", None) == "t1"]
    assert kinds.index("ToolFinished") > max(i for i, k in enumerate(kinds) if k == "ToolProgress")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_interrupt_cancels_the_call_on_the_server_which_keeps_serving(transport, tmp_path, mcp, make_agent):
    log = tmp_path / "server.log"
    with spec_for(transport, log) as spec:
        tools, _ = mcp(spec)
        server = ScriptedServer([reply(ToolUse("t1", "mcp__t__slow", {"n": 500})),
                                 reply(ToolUse("t2", "mcp__t__echo", {"text": "still here"})), reply(Text("done"))])
        with server:
            agent, renderer = make_agent(server, tools=tools)
            threading.Thread(target=lambda: wait_until(lambda: renderer.of(ToolProgress), 20)
                             and interrupt_turn(agent), daemon=True).start()
            assert agent.send("go").stop_reason == "interrupted"
            assert wait_until(lambda: "cancelled slow" in calls(log), 5), calls(log)
            if transport == "stdio":
                assert server_processes(log)  # its process was never signalled
            assert agent.send("again").ok
    (stopped,) = [e for e in renderer.of(ToolFinished) if e.id == "t1"]
    assert stopped.result.is_error and stopped.result.content.startswith("cancelled on server t after ")
    assert calls(log) == ["call slow", "cancelled slow", "call echo"]
    assert results(server.requests[2])[0]["content"].startswith("still here")


def test_idle_timeout_is_reset_by_progress_and_capped(tmp_path, mcp, make_agent):
    log = tmp_path / "server.log"
    tools, _ = mcp(stdio_spec(log, "--step", "0.2", tool_timeout=1.0),
                   stdio_spec(log, "--step", "0.2", name="c", tool_timeout=1.0, tool_timeout_max=1.5))
    server = ScriptedServer([reply(ToolUse("t1", "mcp__t__slow", {"n": 8}), ToolUse("t2", "mcp__t__hang", {}),
                                   ToolUse("t3", "mcp__c__slow", {"n": 50})), reply(Text("done"))])
    with server:
        agent, _ = make_agent(server, tools=tools)
        assert agent.send("go").ok
    alive, hung, capped = results(server.requests[1])
    assert "counted to 8" in alive["content"] and not alive.get("is_error")  # 1.6 s, never idle for 1 s
    assert hung["is_error"] and "no result and no progress for 1 s" in hung["content"]
    assert capped["is_error"] and "calls may take at most 1.5 s" in capped["content"]
    assert wait_until(lambda: calls(log).count("cancelled slow") == 1 and "cancelled hang" in calls(log), 5)


def test_a_2mb_result_is_spilled_and_previewed_and_an_image_saved(tmp_path, mcp, make_agent):
    tools, _ = mcp(stdio_spec(tmp_path / "server.log"))

    def read_on(body: dict) -> dict:  # the model reads on where the preview said the result was kept
        answers = [b for b in body["messages"][-1]["content"] if b.get("type") == "tool_result"]
        if answers[0]["tool_use_id"] != "t1":
            return reply(Text("done"))
        kept = answers[0]["content"].split("all of it is in ")[1].split(", which")[0]
        return reply(ToolUse("t3", "read_mcp_result", {"path": kept, "offset": 20_000, "limit": 2}),
                     ToolUse("t4", "read_mcp_result", {"path": str(tmp_path / "server.log")}))

    server = ScriptedServer([reply(ToolUse("t1", "mcp__t__big", {"kb": 2048}), ToolUse("t2", "mcp__t__picture", {}))],
                            respond=read_on)
    with server:
        agent, _ = make_agent(server, tools=tools)
        assert agent.send("go").ok
    big, picture = results(server.requests[1])
    assert len(big["content"]) < 12_000 and big["content"].startswith("00000000 0123")
    assert "the result is 2.0 MB" in big["content"]
    spilled = Path(big["content"].split("all of it is in ")[1].split(", which")[0])
    assert spilled.parent == tmp_path / "session" and spilled.stat().st_size == 2048 * 1024
    assert spilled.stat().st_mode & 0o077 == 0  # private
    saved = Path(picture["content"].split("saved to ")[1].split("]")[0])
    assert saved.suffix == ".png" and saved.read_bytes().startswith(b"\x89PNG")
    read, outside = results(server.requests[2])
    assert read["content"].startswith(" 20000\t00019999 0123") and "read on with offset=20002" in read["content"]
    assert outside["is_error"] and "is not a kept MCP result" in outside["content"]


def test_a_rolled_back_reply_does_not_call_the_tool_twice(tmp_path, mcp, make_agent):
    log = tmp_path / "server.log"
    tools, _ = mcp(stdio_spec(log))
    broken = reply(ToolUse("t1", "mcp__t__echo", {"text": "once"}), Text("and then the line drops"))
    broken["drop_after"] = len(broken["events"]) - 1  # before message_stop
    server = ScriptedServer([broken, reply(ToolUse("t2", "mcp__t__echo", {"text": "once"})), reply(Text("done"))])
    with server:
        agent, renderer = make_agent(server, tools=tools)
        assert agent.send("go").ok
    assert calls(log) == ["call echo"]
    (rolled,) = renderer.of(TurnRolledBack)
    assert rolled.commands == ("mcp__t__echo",)  # listed with the commands that ran
    (reused,) = [e for e in renderer.of(ToolFinished) if e.id == "t2"]
    assert reused.reused and results(server.requests[2])[0]["content"].startswith("once")


def test_a_slow_initialize_does_not_delay_the_start_and_the_first_request_waits_only_its_timeout(
        tmp_path, mcp, make_agent):
    said: list[str] = []
    tools, servers = mcp(stdio_spec(tmp_path / "slow.log", "--sleep-before-start", "60", name="slowpoke",
                                    startup_timeout=1.0),
                         stdio_spec(tmp_path / "fine.log", "--sleep-before-start", "0.5", name="fine"), said=said)
    assert any("slowpoke · starting" in row for row in servers.describe())  # start() returned at once
    server = ScriptedServer([reply(Text("hello"))])
    with server:
        agent, _ = make_agent(server, tools=tools)
        assert agent.send("go").ok
    assert said == ["MCP server 'slowpoke' failed: did not start within 1 s"], servers.describe()
    names = [t["name"] for t in server.requests[0]["body"]["tools"]]
    assert "mcp__fine__echo" in names and not [n for n in names if n.startswith("mcp__slowpoke")]


def test_a_dead_server_is_one_line_and_the_session_goes_on(tmp_path, mcp, make_agent):
    said: list[str] = []
    dead = ServerSpec("dead", "test", False, command=sys.executable,
                      args=("-c", "import sys; sys.stderr.write('boom: no module named x\\n'); sys.exit(3)"))
    missing = ServerSpec("missing", "test", False, command="/nonexistent/mcp-server")
    tools, _ = mcp(dead, missing, said=said)
    server = ScriptedServer([reply(Text("hello")), reply(Text("again"))])
    with server:
        agent, _ = make_agent(server, tools=tools)
        assert agent.send("go").ok
        assert agent.send("more").ok  # said once, not at every turn
    assert len(said) == 2, said
    assert said[0].startswith("MCP server 'dead' failed: ") and "boom: no module named x" in said[0]
    assert said[1].startswith("MCP server 'missing' failed: ") and "No such file or directory" in said[1]


def test_read_only_mode_runs_only_trusted_read_only_tools_and_ask_mode_asks_with_always(tmp_path, mcp, workspace):
    log = tmp_path / "server.log"
    tools, _ = mcp(stdio_spec(log), stdio_spec(log, name="r", trusted=True))
    asked: list[str] = []
    scenario = [reply(ToolUse("a", "mcp__t__echo", {"text": "x"}), ToolUse("b", "mcp__t__peek", {}),
                      ToolUse("c", "mcp__r__peek", {})), reply(Text("done")),
                reply(ToolUse("d", "mcp__t__echo", {"text": "1"}), ToolUse("e", "mcp__t__echo", {"text": "2"})),
                reply(Text("done"))]
    server = ScriptedServer(scenario)
    with server:
        config = AgentConfig(workspace=workspace, base_url=server.url, api_key="sk-test", system_prompt="test",
                             prompt_cache=False, tell_date=False, mode="read-only")
        agent = Agent(config, tools=tools, renderer=RecordingRenderer(),
                      confirm=lambda question, cancelled: asked.append(question) or "always")
        try:
            assert agent.send("look").ok
            agent.gate.mode = "ask"
            assert agent.send("change").ok
        finally:
            agent.close()
    echo, untrusted_peek, trusted_peek = results(server.requests[1])
    assert echo["is_error"] and "read-only mode" in echo["content"]
    assert untrusted_peek["is_error"] and "read-only mode" in untrusted_peek["content"]  # its hint is only a hint
    assert trusted_peek["content"].startswith("peeked")
    assert asked == ["Calling echo on t?"]  # "always" covers that tool from then on
    assert calls(log) == ["call peek", "call echo", "call echo"]


def test_a_failing_tool_is_an_error_result_the_model_can_read(tmp_path, mcp, make_agent):
    tools, _ = mcp(stdio_spec(tmp_path / "server.log"))
    server = ScriptedServer([reply(ToolUse("t1", "mcp__t__fail", {}), ToolUse("t2", "mcp__t__echo", {"wrong": 1})),
                             reply(Text("done"))])
    with server:
        agent, _ = make_agent(server, tools=tools)
        assert agent.send("go").ok
    failed, invalid = results(server.requests[1])
    assert failed["is_error"] and "it failed on purpose" in failed["content"]
    assert invalid["is_error"] and "missing required field 'text'" in invalid["content"]


def test_a_server_that_dies_mid_call_is_an_error_result_one_line_and_its_tools_leave(tmp_path, mcp, make_agent):
    said: list[str] = []
    tools, _ = mcp(stdio_spec(tmp_path / "server.log"), said=said)
    server = ScriptedServer([reply(ToolUse("t1", "mcp__t__crash", {})), reply(Text("noted")), reply(Text("next"))])
    with server:
        agent, _ = make_agent(server, tools=tools)
        assert agent.send("go").ok
        assert agent.send("and now").ok
    (crashed,) = results(server.requests[1])
    assert crashed["is_error"] and crashed["content"].startswith("MCP server t: ")
    assert said == ["MCP server 't' failed: the connection closed (crashing on purpose)"]
    assert not [t["name"] for t in server.requests[2]["body"]["tools"] if t["name"].startswith("mcp__")]


def test_ctrl_c_while_the_first_turn_waits_for_a_starting_server_ends_the_wait(tmp_path, mcp, make_agent):
    tools, _ = mcp(stdio_spec(tmp_path / "server.log", "--sleep-before-start", "60", startup_timeout=60.0))
    server = ScriptedServer([reply(Text("never asked"))])
    with server:
        agent, _ = make_agent(server, tools=tools)
        threading.Thread(target=lambda: wait_until(lambda: agent.busy, 10) and interrupt_turn(agent),
                         daemon=True).start()
        assert agent.send("go").stop_reason == "interrupted"  # not 60 s later: the test would time out
    assert server.requests == []


def test_two_servers_whose_tools_name_alike_offer_the_first_ones(tmp_path, mcp, make_agent):
    tools, _ = mcp(stdio_spec(tmp_path / "one.log", name="a.b"), stdio_spec(tmp_path / "two.log", name="a_b"))
    server = ScriptedServer([reply(ToolUse("t1", "mcp__a_b__echo", {"text": "which"})), reply(Text("done"))])
    with server:
        agent, _ = make_agent(server, tools=tools)
        assert agent.send("go").ok
    assert calls(tmp_path / "one.log") == ["call echo"] and calls(tmp_path / "two.log") == []


def test_the_sdk_is_not_imported_on_the_way_to_the_prompt():
    import subprocess

    code = ("import sys, midstream.tools.cli.main, midstream.tools.mcp, midstream.tools.mcp.runtime; "
            "print(sorted(m for m in ('mcp', 'anyio', 'mcp_types', 'httpx2') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['httpx2']"  # the model wire's own; the SDK and anyio come on their thread


def test_a_servers_stderr_reaches_the_terminal_without_escape_sequences(tmp_path, mcp, make_agent):
    said: list[str] = []
    hostile = ServerSpec("hostile", "test", False, command=sys.executable,
                         args=("-c", "import sys; sys.stderr.write('\\x1b]0;owned\\x07\\x1b[2Jgone\\n'); sys.exit(1)"))
    tools, servers = mcp(hostile, said=said)
    server = ScriptedServer([reply(Text("hello"))])
    with server:
        agent, _ = make_agent(server, tools=tools)
        assert agent.send("go").ok
    (line,) = said
    assert "\x1b" not in line and "\x07" not in line and "gone" in line
    assert all(row.isprintable() for row in servers.describe())
