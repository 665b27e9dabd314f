"""One call, one record: a call is judged once at dispatch, and what a person sees comes from facts.

A ``bash`` call's command is read once (not once by the scheduler, again by the gate, again for the
countdown); the status line and the outcome line are worded by the tool and filled from the result's
facts, so a tool whose text for the model changes wording is still shown right.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

from midstream.sandbox import shellparse
from midstream.tools import builtin_tools
from midstream.tools.events import ToolFinished, ToolRunning
from midstream.tools.registry import Output, ToolContext, ToolError, ToolRegistry
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply
from midstream.tools.ui.render import PlainRenderer, outcome_line


class _CountingParser:
    """The real tree-sitter parser, counting what it is asked to parse."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.texts: list[bytes] = []

    def parse(self, text: bytes) -> Any:
        self.texts.append(text)
        return self.real.parse(text)


def test_a_bash_call_through_the_loop_reads_its_command_exactly_once(make_agent, monkeypatch, workspace):
    counting = _CountingParser(shellparse._parser())
    monkeypatch.setattr(shellparse, "_parser", lambda: counting)
    (workspace / "build").mkdir()
    (workspace / "build" / "out.o").write_text("x")
    commands = ["ls -la", "rm -rf build"]  # a read, and a destructive command with a countdown to list
    server = ScriptedServer([reply(*[ToolUse(f"t{i}", "bash", {"command": c}) for i, c in enumerate(commands)]),
                             reply(Text("done"))])
    with server:
        agent, renderer = make_agent(server, isolation="none", grace_seconds=0.05)
        assert agent.send("go").ok
    for command in commands:
        assert counting.texts.count(command.encode()) == 1, (command, counting.texts)
    assert not (workspace / "build").exists()  # it ran, after its countdown
    assert [e.status for e in renderer.of(ToolRunning)] == ["Running `ls -la`", "Running `rm -rf build`"]


def _reworded(tool: Any, rewrite: Any) -> Any:
    """``tool`` with other words for the model: same facts, different text."""
    def function(ctx: ToolContext, **args: Any) -> Output:
        try:
            out = tool.function(ctx, **args)
        except ToolError as failed:
            raise ToolError(rewrite(str(failed)), failed.facts) from None
        return Output(rewrite(out.text), out.facts)

    return dataclasses.replace(tool, function=function)


def test_changing_what_a_tool_tells_the_model_leaves_its_status_line_right(make_agent, workspace):
    (workspace / "a.py").write_text("one\ntwo\n")
    (workspace / "b.py").write_text("x = 1\n")
    other_words = "Quite other words. [status 0] 99 failed"
    reworded = ToolRegistry([_reworded(t, lambda text: other_words) for t in builtin_tools()])
    server = ScriptedServer([
        reply(ToolUse("t1", "read_file", {"path": "a.py"}), ToolUse("t2", "bash", {"command": "exit 3"}),
              ToolUse("t3", "edit_file", {"path": "b.py", "old_string": "x = 1", "new_string": "x = 2"}),
              ToolUse("t4", "glob", {"pattern": "*.py"})),
        reply(Text("done")),
    ])
    with server:
        agent, renderer = make_agent(server, tools=reworded, isolation="none")
        assert agent.send("go").ok
    lines = {e.id: outcome_line(e) for e in renderer.of(ToolFinished)}
    assert lines["t1"] == "✓ Read a.py (2 lines)"
    assert lines["t2"] == "✗ Ran `exit 3`: exit 3"  # no "(99 failed)": the counts are the command's own
    assert lines["t3"] == "✓ Edited b.py"
    assert lines["t4"] == "✓ Found *.py (2 files)"
    edited = next(e for e in renderer.of(ToolFinished) if e.id == "t3")
    assert "-x = 1" in edited.result.facts.diff and "+x = 2" in edited.result.facts.diff
    sent = server.requests[-1]["body"]["messages"][-1]["content"]
    assert all(block["content"].startswith("Quite other words.") for block in sent)  # the model got the new words


def test_the_plain_renderer_words_a_finished_read_from_its_facts(make_agent, workspace):
    (workspace / "notes.md").write_text("a\nb\nc\n")
    err = io.StringIO()
    server = ScriptedServer([reply(ToolUse("t1", "read_file", {"path": "notes.md"})), reply(Text("done"))])
    with server:
        agent, _ = make_agent(server)
        agent.ledger.renderer = PlainRenderer(io.StringIO(), err, stream_text=False)
        assert agent.send("go").ok
    assert "✓ Read notes.md (3 lines)" in err.getvalue().splitlines()
