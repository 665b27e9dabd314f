"""Permission modes, driven through the real loop against the scripted server."""

from __future__ import annotations

import pytest
from midstream.tools.events import ToolGrace
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import tool_results


@pytest.mark.process
def test_read_only_mode_refuses_writes_and_commands_that_write(make_agent, workspace):
    (workspace / "a.txt").write_text("alpha\n")
    server = ScriptedServer([
        reply(ToolUse("t1", "read_file", {"path": "a.txt"}),
              ToolUse("t2", "write_file", {"path": "b.txt", "content": "x"}),
              ToolUse("t3", "bash", {"command": "touch c.txt"}),
              ToolUse("t4", "bash", {"command": "ls"})),
        reply(Text("ok")),
    ])
    with server:
        agent, _ = make_agent(server, mode="read-only")
        agent.send("try")
    read, write, touch, ls = tool_results(server.requests[1])
    assert "alpha" in read["content"] and "is_error" not in read
    assert write["is_error"] and "read-only mode" in write["content"]
    assert touch["is_error"] and "read-only mode" in touch["content"]
    assert "a.txt" in ls["content"]
    assert not (workspace / "b.txt").exists() and not (workspace / "c.txt").exists()


def test_ask_mode_asks_and_remembers_always(make_agent, workspace):
    questions: list[str] = []
    answers = iter(["no", "always"])

    def confirm(question: str, cancelled) -> str:
        questions.append(question)
        return next(answers)

    server = ScriptedServer([
        reply(ToolUse("t1", "write_file", {"path": "refused.txt", "content": "x"})),
        reply(ToolUse("t2", "write_file", {"path": "yes.txt", "content": "x"}),
              ToolUse("t3", "write_file", {"path": "also.txt", "content": "x"}),
              ToolUse("t4", "read_file", {"path": "yes.txt"})),
        reply(Text("ok")),
    ])
    with server:
        agent, _ = make_agent(server, mode="ask")
        agent.gate.confirm = confirm
        agent.send("write")
    assert questions == ["Writing refused.txt?", "Writing yes.txt?"]  # "always" covers the next write
    refused = server.requests[1]["body"]["messages"][-1]["content"][0]
    assert refused["is_error"] and "refused" in refused["content"]
    assert not (workspace / "refused.txt").exists()
    assert (workspace / "yes.txt").exists() and (workspace / "also.txt").exists()


def test_ask_mode_without_anyone_to_ask_refuses(make_agent, workspace):
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "touch x"})), reply(Text("ok"))])
    with server:
        agent, _ = make_agent(server, mode="ask")
        agent.send("go")
    assert "non-interactive" in tool_results(server.requests[1])[0]["content"]
    assert not (workspace / "x").exists()


def test_auto_mode_shows_a_destructive_call_s_targets_then_runs_it(make_agent, workspace):
    (workspace / "build").mkdir()
    for i in range(3):
        (workspace / "build" / f"{i}.o").write_text("")
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "rm -rf build/"})), reply(Text("ok"))])
    with server:
        agent, renderer = make_agent(server, mode="auto", grace_seconds=0.2, isolation="none")
        agent.send("clean")
    (grace,) = renderer.of(ToolGrace)
    assert grace.description == "rm -rf build/" and grace.targets == ("build/ (3 files)",)
    assert not (workspace / "build").exists()


def test_a_whole_task_with_the_real_tools(make_agent, workspace):
    (workspace / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    server = ScriptedServer([
        reply(Text("Looking."), ToolUse("t1", "grep", {"pattern": "def add"}),
              ToolUse("t2", "read_file", {"path": "calc.py"})),
        reply(ToolUse("t3", "edit_file", {"path": "calc.py", "old_string": "a - b", "new_string": "a + b"})),
        reply(ToolUse("t4", "bash", {"command": "python3 -c 'import calc; print(calc.add(2, 3))'"})),
        reply(Text("Fixed: add now adds.")),
    ])
    with server:
        agent, _ = make_agent(server, isolation="none")
        assert agent.send("fix add").ok
    assert (workspace / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    last = server.requests[3]["body"]["messages"][-1]["content"][0]
    assert last["content"] == "5\n[exit status 0]"
    grep_result = server.requests[1]["body"]["messages"][-1]["content"][0]["content"]
    assert "calc.py:1:def add(a, b):" in grep_result


def test_ask_mode_always_covers_one_program_and_subcommand_never_a_destructive_form(make_agent, workspace):
    (workspace / "x").mkdir()
    questions: list[str] = []

    def confirm(question: str, cancelled) -> str:
        questions.append(question)
        return "always"

    server = ScriptedServer([
        reply(ToolUse("t1", "bash", {"command": "npm test"})),
        reply(ToolUse("t2", "bash", {"command": "npm test"}),  # covered by "always"
              ToolUse("t3", "bash", {"command": "rm -rf x"})),  # a destructive form: asked
        reply(ToolUse("t4", "bash", {"command": "rm -rf x"}),  # and asked again: "always" never sticks to it
              ToolUse("t5", "bash", {"command": "npm run lint"}),  # another subcommand: asked
              ToolUse("t6", "bash", {"command": "npm test && touch y"})),  # npm test plus touch: asked
        reply(Text("ok")),
    ])
    with server:
        agent, _ = make_agent(server, mode="ask", isolation="none")
        agent.gate.confirm = confirm
        agent.send("go")
    assert questions == ["Running `npm test`?", "Running `rm -rf x`?", "Running `rm -rf x`?",
                         "Running `npm run lint`?", "Running `npm test && touch y`?"]


@pytest.mark.process
def test_always_for_make_test_does_not_cover_make_test_with_a_makefile_from_stdin(make_agent, workspace):
    questions: list[str] = []

    def confirm(question: str, cancelled) -> str:
        questions.append(question)
        return "always"

    server = ScriptedServer([
        reply(ToolUse("t1", "bash", {"command": "make test"})),
        reply(ToolUse("t2", "bash", {"command": "make test"})),  # covered
        reply(ToolUse("t3", "bash", {"command": "make test -f /dev/stdin"})),  # another program entirely: asked
        reply(ToolUse("t4", "bash", {"command": "sed -n 'w out' a.txt"})),  # not read-only: asked
        reply(ToolUse("t5", "bash", {"command": "git -c diff.external=./x log --ext-diff"})),  # asked
        reply(ToolUse("t6", "bash", {"command": "make test"})),  # still covered
        reply(Text("ok")),
    ])
    (workspace / "a.txt").write_text("a\n")
    with server:
        agent, _ = make_agent(server, mode="ask", isolation="none")  # asked before running: what "always" covers
        agent.gate.confirm = confirm
        agent.send("go")
    assert questions == ["Running `make test`?", "Running `make test -f /dev/stdin`?",
                         "Running `sed -n 'w out' a.txt`?", "Running `git -c diff.external=./x log --ext-diff`?"]


def test_a_countdown_with_nothing_to_list_says_why_the_command_is_destructive(make_agent, workspace):
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "X=$(cat name); $X -rf ."})), reply(Text("ok"))])
    with server:
        agent, renderer = make_agent(server, mode="auto", grace_seconds=0.05, isolation="none")
        agent.send("go")
    (grace,) = renderer.of(ToolGrace)
    assert grace.targets == ("cannot tell: the command name is not a literal word",)
