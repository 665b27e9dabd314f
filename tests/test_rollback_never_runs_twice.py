"""A rolled-back attempt lists the commands that ran, undoes file tools' writes, and a command never
runs twice for one request: the retry (and /retry) reuse its result. A new message is a new request.

Each command appends a line to log.txt, so the file counts how often it really ran.
"""

from __future__ import annotations

import pytest
from midstream.tools.events import ToolFinished, TurnRolledBack
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import drop_after_block, tool_results

pytestmark = pytest.mark.process  # the bash tool starts real commands

APPEND = "echo ran >> log.txt"


def appended(call_id: str) -> dict:
    # The text after the call streams for ~0.4 s: the command has started (and ended) before the reply
    # breaks off after it (drop_after_block(..., 1)); a call not started by then would never start.
    return reply(ToolUse(call_id, "bash", {"command": APPEND}), Text("and more to say", chunk=4, delay=0.1))


def runs(workspace) -> int:
    log = workspace / "log.txt"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_two_rollbacks_in_a_row_list_the_command_each_time_and_it_runs_once(make_agent, workspace):
    server = ScriptedServer([drop_after_block(appended("t1"), 1), drop_after_block(appended("t2"), 1),
                             appended("t3"), reply(Text("done"))])
    with server:
        agent, renderer = make_agent(server, isolation="none")
        assert agent.send("go").ok
    assert runs(workspace) == 1
    first, second = renderer.of(TurnRolledBack)
    assert first.commands == (APPEND,) and second.commands == (APPEND,)  # the second from the reused result
    finished = {e.id: e for e in renderer.of(ToolFinished)}
    assert not finished["t1"].reused and finished["t2"].reused and finished["t3"].reused
    (result,) = tool_results(server.requests[3])
    assert result["tool_use_id"] == "t3" and result["content"] == "[exit status 0]"


def test_a_rolled_back_write_is_undone_when_the_retry_does_not_make_it(make_agent, workspace):
    (workspace / "keep.txt").write_text("original\n")
    writes = reply(ToolUse("t1", "write_file", {"path": "keep.txt", "content": "changed\n"}),
                   ToolUse("t2", "write_file", {"path": "new.txt", "content": "new\n"}), Text("more"))
    server = ScriptedServer([drop_after_block(writes, 1), reply(Text("on second thought, nothing"))])
    with server:
        agent, renderer = make_agent(server, isolation="none")
        assert agent.send("go").ok
    assert (workspace / "keep.txt").read_text() == "original\n"
    assert not (workspace / "new.txt").exists()
    (rolled,) = renderer.of(TurnRolledBack)
    assert sorted(rolled.undone) == ["keep.txt", "new.txt"] and rolled.commands == ()


def test_retry_after_attempts_ran_out_reuses_what_ran(make_agent, workspace):
    server = ScriptedServer([drop_after_block(appended("t1"), 1), appended("t2"), reply(Text("done"))])
    with server:
        agent, renderer = make_agent(server, isolation="none", max_attempts=1)
        assert not agent.send("go").ok
        assert agent.retry().ok
    assert runs(workspace) == 1  # /retry sends the same request: the command it ran is not run again


def test_a_new_message_runs_a_command_again_that_an_earlier_failed_request_ran(make_agent, workspace):
    # The first message's only attempt ran the command, then broke off. The person asks again in a
    # new message: the model's identical call is a new request's call, and must run, not be answered
    # with the earlier (stale) result.
    server = ScriptedServer([drop_after_block(appended("t1"), 1), appended("t2"), reply(Text("done"))])
    with server:
        agent, renderer = make_agent(server, isolation="none", max_attempts=1)
        assert not agent.send("go").ok
        assert agent.send("please run it again").ok
    assert runs(workspace) == 2
    assert not next(e for e in renderer.of(ToolFinished) if e.id == "t2").reused


def test_a_write_a_command_built_on_stays_and_both_are_reused_not_redone(make_agent, workspace):
    # The text after the calls streams slowly: both have run when the reply breaks off (a call still
    # waiting then would never start; see the test below).
    both = reply(ToolUse("t1", "write_file", {"path": "a.txt", "content": "one\n"}),
                 ToolUse("t2", "bash", {"command": "echo two >> a.txt"}), Text("more", chunk=1, delay=0.15))
    server = ScriptedServer([drop_after_block(both, 2), both, reply(Text("done"))])
    with server:
        agent, renderer = make_agent(server, isolation="none")
        assert agent.send("go").ok
    assert (workspace / "a.txt").read_text() == "one\ntwo\n"
    (rolled,) = renderer.of(TurnRolledBack)
    assert rolled.kept == ("a.txt",) and rolled.commands == ("echo two >> a.txt",) and rolled.undone == ()
    assert [e.reused for e in renderer.of(ToolFinished)] == [False, False, True, True]


def test_a_read_of_a_write_that_was_undone_is_read_again_not_reused(make_agent, workspace):
    # The first attempt wrote a.txt and then read it; the rollback restores a.txt. The retry reads
    # it without writing: it must get what is on disk now, not the undone write's text.
    (workspace / "a.txt").write_text("old\n")
    first = reply(ToolUse("t1", "write_file", {"path": "a.txt", "content": "new\n"}),
                  ToolUse("t2", "read_file", {"path": "a.txt"}), Text("more"))
    server = ScriptedServer([drop_after_block(first, 1), reply(ToolUse("t3", "read_file", {"path": "a.txt"})),
                             reply(Text("done"))])
    with server:
        agent, renderer = make_agent(server, isolation="none")
        assert agent.send("go").ok
    (read,) = tool_results(server.requests[2])
    assert "old" in read["content"] and "new" not in read["content"], read
    assert not next(e for e in renderer.of(ToolFinished) if e.id == "t3").reused


def test_a_read_after_a_new_write_in_the_retry_is_read_again_not_reused(make_agent, workspace):
    # The retry first changes a.txt (a call the first attempt did not make), then reads it: the read
    # comes after the write, so the first attempt's read of a.txt is stale.
    (workspace / "a.txt").write_text("old\n")
    first = reply(ToolUse("t1", "read_file", {"path": "a.txt"}), Text("more"))
    retry = reply(ToolUse("t2", "write_file", {"path": "a.txt", "content": "changed\n"}),
                  ToolUse("t3", "read_file", {"path": "a.txt"}))
    server = ScriptedServer([drop_after_block(first, 0), retry, reply(Text("done"))])
    with server:
        agent, renderer = make_agent(server, isolation="none")
        assert agent.send("go").ok
    _, read = tool_results(server.requests[2])
    assert "changed" in read["content"], read


def test_a_call_waiting_behind_another_when_the_reply_breaks_off_runs_once_and_the_retry_reuses_it(
        make_agent, workspace):
    # t2 may write what t1 writes, so it waits for t1; the reply breaks off while t1 runs. Every dispatched
    # call runs (whether a queued call has started when a drop arrives is chance; the rule must not be): t2
    # runs after t1, the rollback lists both commands, and the retry's identical calls reuse their results.
    first, second = "sleep 1; echo one >> log.txt", "echo two >> log.txt"
    calls = reply(ToolUse("t1", "bash", {"command": first}), Text("while that runs", chunk=5, delay=0.1),
                  ToolUse("t2", "bash", {"command": second}))
    again = reply(ToolUse("t3", "bash", {"command": first}), ToolUse("t4", "bash", {"command": second}))
    server = ScriptedServer([drop_after_block(calls, 2), again, reply(Text("done"))])
    with server:
        agent, renderer = make_agent(server, isolation="none")
        assert agent.send("go").ok
    assert (workspace / "log.txt").read_text() == "one\ntwo\n"  # each once
    (rolled,) = renderer.of(TurnRolledBack)
    assert rolled.commands == (first, second)
    finished = {e.id: e for e in renderer.of(ToolFinished)}
    assert finished["t3"].reused and finished["t4"].reused
