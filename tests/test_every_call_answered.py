"""Every tool_use gets exactly one tool_result, in block order, on every path a turn can take.

Attacks on the typed call path: interrupts while calls run, wait behind another call or wait for a
free worker; a second Ctrl-C; rollbacks with reused results; refused, unknown and invalid calls;
max_tokens cutting a call. The real loop against the scripted server, real tools in a tmp workspace.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from midstream.tools.cli.interrupts import interrupt_turn
from midstream.tools.conversation.history import history_problems
from midstream.tools.events import ToolFinished, ToolRunning, TurnCommitted
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import wait_until

pytestmark = pytest.mark.process  # the bash tool starts real commands


def answered_in_order(messages: list[dict[str, Any]]) -> None:
    """Each assistant tool_use is answered once, by the next message, in block order."""
    assert history_problems(messages) == []
    for index, message in enumerate(messages):
        if message["role"] != "assistant" or not isinstance(message["content"], list):
            continue
        asked = [b["id"] for b in message["content"] if b["type"] == "tool_use"]
        if asked:
            following = messages[index + 1]["content"]
            assert [b["tool_use_id"] for b in following if b["type"] == "tool_result"] == asked


def interrupt_when(agent: Any, condition: Any) -> threading.Thread:
    """Esc (the first Ctrl-C's effect) from another thread, once ``condition`` holds."""
    def press() -> None:
        assert wait_until(condition, 10)
        interrupt_turn(agent)

    thread = threading.Thread(target=press, daemon=True)
    thread.start()
    return thread


def running(renderer: Any, call_id: str, committed: bool = True) -> Any:
    """``call_id`` runs (and the reply that asked for it is committed: every call of it dispatched)."""
    return lambda: (any(e.id == call_id for e in renderer.of(ToolRunning))
                    and (not committed or bool(renderer.of(TurnCommitted))))


def test_a_call_queued_for_a_free_worker_does_not_run_after_the_interrupt(make_agent, workspace):
    # One worker: t2 does not conflict with t1 (both read), so the scheduler hands it to the pool at
    # once, where it waits for t1's thread. The person interrupts while t1 runs: t2 must not run.
    server = ScriptedServer([
        reply(ToolUse("t1", "bash", {"command": "tail -f /dev/null"}),
              ToolUse("t2", "bash", {"command": "echo two-ran"})),
        reply(Text("ok")),
    ])
    with server:
        agent, renderer = make_agent(server, isolation="none", workers=1)
        interrupt_when(agent, running(renderer, "t1"))
        ended = agent.send("go")
        assert ended.stop_reason == "interrupted"
        assert agent.send("and now?").ok
    answered_in_order(agent.history)
    results = [b for b in agent.history[2]["content"] if b["type"] == "tool_result"]
    assert "Interrupted by the person" in results[0]["content"]
    assert results[1]["content"].startswith("Not run"), results[1]["content"]
    finished = {e.id: e for e in renderer.of(ToolFinished)}
    assert finished["t2"].result.facts.ended == "not_run"


def test_a_call_waiting_behind_another_is_answered_not_run_and_reported_finished(make_agent, workspace):
    # t2 writes what t1 writes (both whole-workspace commands): it waits for t1, and the interrupt
    # cancels it. The model gets "Not run"; the renderers (and json output) get its ToolFinished.
    server = ScriptedServer([
        reply(ToolUse("t1", "bash", {"command": "sleep 30"}), ToolUse("t2", "bash", {"command": "touch two"}),
              ToolUse("t3", "read_file", {"path": "nothing.txt"})),
        reply(Text("ok")),
    ])
    with server:
        agent, renderer = make_agent(server, isolation="none")
        interrupt_when(agent, running(renderer, "t1"))
        assert agent.send("go").stop_reason == "interrupted"
    answered_in_order(agent.history)
    assert not (workspace / "two").exists()
    finished = {e.id: e for e in renderer.of(ToolFinished)}
    assert set(finished) == {"t1", "t2", "t3"}
    assert finished["t1"].result.facts.ended == "interrupted"
    assert finished["t2"].result.facts.ended == "not_run"
    assert finished["t2"].status == "Running `touch two`"


def test_refused_unknown_invalid_and_cut_off_calls_are_answered_in_block_order(make_agent, workspace):
    (workspace / "a.txt").write_text("a\n")
    calls = reply(
        ToolUse("t1", "write_file", {"path": "b.txt", "content": "x"}),  # refused: read-only mode
        ToolUse("t2", "no_such_tool", {"x": 1}),
        ToolUse("t3", "read_file", {"path": 7}),  # invalid input
        ToolUse("t4", "read_file", {"path": "a.txt"}),
        ToolUse("t5", "read_file", raw_json='{"path": "a.t'),  # not JSON
        ToolUse("t6", "read_file", {"path": "a.txt", "offset": 1}, stop=False),  # cut off by max_tokens
        stop_reason="max_tokens",
    )
    server = ScriptedServer([calls, reply(Text("done"))])
    with server:
        agent, renderer = make_agent(server, mode="read-only")
        assert agent.send("go").ok
    answered_in_order(agent.history)
    sent = agent.history[1]["content"]
    assert [b["id"] for b in sent if b["type"] == "tool_use"] == ["t1", "t2", "t3", "t4"]  # t5, t6 cut off
    results = {b["tool_use_id"]: b for b in agent.history[2]["content"]}
    assert [results[i].get("is_error", False) for i in ("t1", "t2", "t3", "t4")] == [True, True, True, False]
    assert not (workspace / "b.txt").exists()
    ended = {e.id: e.result.facts.ended for e in renderer.of(ToolFinished)}
    assert ended["t1"] == ended["t2"] == ended["t3"] == "refused" and ended["t4"] == "ran"


def test_a_second_ctrl_c_kills_a_command_that_ignores_polite_signals_and_everything_is_answered(make_agent,
                                                                                                workspace):
    # It notes each polite signal and goes on. The first Ctrl-C sends SIGINT (then SIGTERM a second
    # later); the second, pressed once SIGINT arrived, must kill the group at once: no SIGTERM seen.
    stubborn = "trap 'echo int >> sig.log' INT; trap 'echo term >> sig.log' TERM; echo up; while :; do sleep 0.1; done"
    signals = workspace / "sig.log"
    server = ScriptedServer([
        reply(ToolUse("t1", "bash", {"command": stubborn}), ToolUse("t2", "bash", {"command": "touch never"})),
        reply(Text("ok")),
    ])
    with server:
        agent, renderer = make_agent(server, isolation="none")
        interrupt_when(agent, running(renderer, "t1"))

        def second() -> None:
            assert wait_until(lambda: signals.exists() and "int" in signals.read_text(), 10)
            agent.hurry()

        threading.Thread(target=second, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):  # the second Ctrl-C leaves, once all is saved
            agent.send("go")
    answered_in_order(agent.history)
    finished = {e.id: e.result for e in renderer.of(ToolFinished)}
    assert finished["t1"].facts.ended == "interrupted" and finished["t1"].facts.exit_status == -9
    assert finished["t2"].facts.ended == "not_run"
    assert signals.read_text().split() == ["int"]


def test_an_interrupt_while_a_call_streams_keeps_the_finished_calls_and_drops_the_unfinished(make_agent, workspace):
    (workspace / "a.txt").write_text("a\n")
    streaming = reply(ToolUse("t1", "read_file", {"path": "a.txt"}),
                      ToolUse("t2", "bash", {"command": "echo " + "x" * 400}, chunk=10, delay=0.05))
    server = ScriptedServer([streaming, reply(Text("ok"))])
    with server:
        agent, renderer = make_agent(server, isolation="none")
        interrupt_when(agent, lambda: server.log.count("sent:content_block_delta") > 10 and renderer.of(ToolFinished))
        ended = agent.send("go")
        assert ended.stop_reason == "interrupted" and ended.usage.requests == 1  # answered, so counted
        assert agent.send("go on").ok
    answered_in_order(agent.history)
    assert [b["id"] for b in agent.history[1]["content"] if b["type"] == "tool_use"] == ["t1"]
    assert agent.history[2]["content"][0]["tool_use_id"] == "t1" and "is_error" not in agent.history[2]["content"][0]
    assert [e.id for e in renderer.of(ToolFinished)] == ["t1"]  # t2 never complete, never run


def test_a_call_waiting_for_its_question_while_another_is_asked_is_not_run_not_refused(make_agent, workspace):
    # Ask mode, two writes that do not conflict: both reach the gate, one is asked, the other waits
    # for the question's turn. Ctrl-C at the question: the asked one was refused by the person; the
    # other was never asked, so it was not run (the model must not hear that the person said no).
    asked: list[str] = []

    def confirm(question: str, cancelled: threading.Event) -> str:
        asked.append(question)
        cancelled.wait(10)
        return "no"

    server = ScriptedServer([
        reply(ToolUse("t1", "write_file", {"path": "one.txt", "content": "1"}),
              ToolUse("t2", "write_file", {"path": "two.txt", "content": "2"})),
        reply(Text("ok")),
    ])
    with server:
        agent, renderer = make_agent(server, mode="ask")
        agent.gate.confirm = confirm
        interrupt_when(agent, lambda: bool(asked) and bool(renderer.of(TurnCommitted)))
        assert agent.send("write both").stop_reason == "interrupted"
    answered_in_order(agent.history)
    assert len(asked) == 1
    results = {b["tool_use_id"]: b["content"] for b in agent.history[2]["content"] if b["type"] == "tool_result"}
    first, second = ("t1", "t2") if asked == ["Writing one.txt?"] else ("t2", "t1")
    assert results[first].startswith("The person refused this call")
    assert results[second].startswith("Not run"), results[second]
    assert not (workspace / "one.txt").exists() and not (workspace / "two.txt").exists()
