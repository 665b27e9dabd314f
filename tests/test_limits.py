"""Limits that fit real work, through the real program: long tasks, the request limit, harmless commands."""

from __future__ import annotations

import itertools
import re

import pexpect
import pytest
from midstream.agent import AgentConfig
from midstream.sandbox.policy import classify
from midstream.tools.testing.raw_server import RawServer, Script, reply_bytes
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import midstream, spawn

pytestmark = pytest.mark.process

FAST = ["--isolation", "none", "--grace", "0"]


def test_a_task_of_120_steps_is_not_stopped_by_the_default_request_limit(workspace):
    assert AgentConfig().max_requests >= 200
    steps = [reply_bytes("anthropic", reply(ToolUse(f"s{i}", "bash", {"command": f"echo step {i}"}))["events"])
             for i in range(120)]
    with RawServer(Script([*steps, reply_bytes("anthropic", reply(Text("all 120 done"))["events"])])) as server:
        done = midstream([*FAST, "-p", "a long task"], workspace, {"ANTHROPIC_BASE_URL": server.url})
    assert done.returncode == 0 and "all 120 done" in done.stdout, done.stderr[-2000:]
    assert len(server.requests) == 121


def test_at_the_request_limit_an_interactive_session_asks_whether_to_go_on(workspace):
    numbers = itertools.count(1)

    def forever(body: dict) -> dict:
        n = next(numbers)
        return reply(ToolUse(f"c{n}", "bash", {"command": f"echo call {n}"}))

    server = ScriptedServer([], respond=forever)
    with server:
        child = spawn(server, workspace, "--max-requests", "3", grace="0", mode="auto")
        child.expect("› ")
        child.sendline("keep going")
        child.expect(re.escape("3 model requests for this message; go on?"))
        child.sendline("y")
        child.expect(re.escape("6 model requests for this message; go on?"))
        child.sendline("n")
        child.expect("stopped after 6 model requests")
        child.expect("› ")
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    assert len([line for line in server.log if line.startswith("request:")]) == 6


@pytest.mark.parametrize("command", ["sleep 1", "echo hello", "true", "date", "printf '%s\\n' x"])
def test_commands_that_cannot_change_the_workspace_are_read_only(command):
    assert classify(command).read_only


def test_a_sleep_runs_beside_other_read_only_commands(workspace):
    """The second command looks for the first one's process: found only if both run at once."""
    calls = [ToolUse("a", "bash", {"command": "sleep 4.123"}),
             ToolUse("b", "bash", {"command": "sleep 0.5; cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' "
                                              "| grep -c 'sleep 4.12[3]'"})]
    with RawServer(Script([reply_bytes("anthropic", reply(*calls)["events"]),
                           reply_bytes("anthropic", reply(Text("both ran"))["events"])])) as server:
        done = midstream([*FAST, "-p", "two commands"], workspace, {"ANTHROPIC_BASE_URL": server.url})
    assert done.returncode == 0 and "both ran" in done.stdout, done.stderr
    results = {b["tool_use_id"]: b for b in server.requests[1].body["messages"][-1]["content"]
               if b.get("type") == "tool_result"}
    seen = results["b"]["content"] if isinstance(results["b"]["content"], str) else results["b"]["content"][0]["text"]
    assert re.search(r"^\s*1\s*$", seen, re.M), seen  # the sleep was running while b looked
