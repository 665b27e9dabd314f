"""Only valid history is committed; transcripts that load, repair and stay repaired; the undo
journal that never undoes a command; prompt history that two agents share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from midstream.sandbox.journal import UndoJournal
from midstream.tools.cli.repl import Interactive
from midstream.tools.cli.typeahead import TypeAhead
from midstream.tools.conversation.history import CommitGuard, HistoryInvalid, history_problems, repair_history
from midstream.tools.conversation.transcript import AGENT_EXITED, SessionInUse, Transcript
from midstream.tools.files import remove_stale_temporaries
from midstream.tools.testing.scripted_server import Raw, ScriptedServer, Text, ToolUse, reply

from tests.helpers import program_env

USER = {"role": "user", "content": [{"type": "text", "text": "hi"}]}


def _use(*ids: str) -> dict:
    return {"role": "assistant", "content": [{"type": "tool_use", "id": i, "name": "n", "input": {}} for i in ids]}


def _answers(*ids: str) -> dict:
    return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": i, "content": "ok"} for i in ids]}


@pytest.mark.parametrize(("history", "message", "why"), [
    ([USER], {"role": "assistant", "content": []}, "empty content"),
    ([USER], {"role": "assistant", "content": [{"type": "text", "text": ""}]}, "empty text"),
    ([USER], _use("a", "a"), "used twice"),
    ([USER, _use("a"), _answers("a")], _use("a"), "used twice"),
    ([USER], {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "n", "input": []}]},
     "not an object"),
    ([USER, _use("a")], USER, "not answered"),
    ([USER, _use("a", "b")], _answers("a"), "not answered"),
    ([USER, _use("a")], _use("b"), "not answered"),
    ([USER], _answers("z"), "answers no tool_use"),
    ([], _use("a"), "start with an assistant"),
    ([USER], {"role": "system", "content": "x"}, "role"),
])
def test_the_guard_refuses_what_the_api_would(history, message, why):
    guard = CommitGuard()
    before = json.dumps(history)
    with pytest.raises(HistoryInvalid, match=why):
        guard.commit(history, message)
    assert json.dumps(history) == before  # nothing changed


def test_the_guard_merges_and_notices_changes_behind_its_back():
    guard, history = CommitGuard(), []
    for message in (USER, _use("a"), _answers("a"), USER, {"role": "assistant", "content": "done"}):
        guard.commit(history, message)
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history_problems(history) == []
    history[1]["content"] = []  # someone else's bug
    with pytest.raises(HistoryInvalid, match="empty content"):
        guard.commit(history, USER)


def test_repair_history_makes_any_mess_valid():
    mess = [
        {"role": "assistant", "content": [{"type": "text", "text": "orphan reply"}]},
        USER, USER,
        {"role": "assistant", "content": [{"type": "text", "text": ""}]},
        _use("a"),
        {"role": "user", "content": [{"type": "text", "text": "typed"}, {"type": "tool_result", "tool_use_id": "a",
                                                                         "content": "late"}]},
        _use("b", "a"),
        {"role": "user", "content": [{"type": "text", "text": "second agent"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c", "name": "n", "input": "bad"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "zzz", "content": "stray"}]},
        _use("d"),
    ]
    repaired = repair_history(mess, AGENT_EXITED)
    assert history_problems(repaired) == []
    assert repaired[1]["content"] == [{"type": "tool_use", "id": "a", "name": "n", "input": {}}]
    assert repaired[2]["content"][0] == {"type": "tool_result", "tool_use_id": "a", "content": "late"}
    assert repaired[-1]["content"] == [{"type": "tool_result", "tool_use_id": "d", "content": AGENT_EXITED,
                                        "is_error": True}]
    assert repair_history(repaired, AGENT_EXITED) == repaired


def test_a_transcript_is_locked_truncated_and_repaired_on_disk(workspace):
    transcript = Transcript.create(workspace, "m")
    transcript.append(USER)
    transcript.append(_use("t1"))
    with pytest.raises(SessionInUse, match="open in another midstream"):
        Transcript(transcript.path)
    transcript.close()
    with transcript.path.open("a") as f:
        f.write('{"type": "message", "message": {"role": "user", "con')  # torn by a crash
    reopened = Transcript(transcript.path)
    reopened.note("after", n=1)  # lands on a line of its own
    history, crashed = reopened.resume()
    assert crashed is None
    assert history[-1]["content"][0]["content"] == AGENT_EXITED
    reopened.append({"role": "user", "content": [{"type": "text", "text": "next"}]})
    reopened.close()
    lines = [json.loads(line) for line in transcript.path.read_text().splitlines()]
    assert {"type": "note", "kind": "after", "n": 1} in lines
    again = Transcript(transcript.path)
    history, _ = again.resume()
    again.close()
    assert history_problems(history) == []
    assert history[-1]["content"][-1] == {"type": "text", "text": "next"}
    assert [b.get("tool_use_id") for b in history[-1]["content"]] == ["t1", None]


def test_a_transcript_that_needs_more_than_an_append_is_rewritten(workspace):
    transcript = Transcript.create(workspace, "m")
    transcript.append(USER)
    transcript.append({"role": "assistant", "content": [{"type": "text", "text": ""}]})  # an older version's bug
    transcript.append({"role": "user", "content": [{"type": "text", "text": "more"}]})
    transcript.close()
    reopened = Transcript(transcript.path)
    history, _ = reopened.resume()
    reopened.close()
    assert history == [{"role": "user", "content": [USER["content"][0], {"type": "text", "text": "more"}]}]
    assert Transcript.load(transcript.path) == history
    assert json.loads(transcript.path.read_text().splitlines()[0])["type"] == "session"


def test_rollback_leaves_a_file_a_command_changed_after_the_tool_wrote_it(tmp_path):
    mine, theirs, later = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    mine.write_text("before\n")
    theirs.write_text("before\n")
    journal = UndoJournal()
    for path in (mine, theirs, later):
        journal.record(path)
        path.write_text("tool\n")
        journal.seal(path)
    with theirs.open("a") as f:
        f.write("command\n")
    journal.record(later)  # a second tool write after a command changed it in between
    later.write_text("command\n")
    journal.record(later)
    later.write_text("tool again\n")
    journal.seal(later)
    assert journal.rollback() == [mine]
    assert sorted(journal.kept) == [theirs, later]
    assert mine.read_text() == "before\n" and theirs.read_text() == "tool\ncommand\n"


def test_stale_temporaries_go_and_nothing_else(tmp_path):
    (tmp_path / ".git").mkdir()
    names = [".a.txt.abcd1234.midstream", "sub/.b.py.x_y_z_12.undo", ".git/.c.abcd1234.midstream",
             "keep.midstream", ".d.txt.abc.midstream", "fresh/.e.txt.abcd1234.midstream"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    import os
    import time

    for name in names[:-1]:
        os.utime(tmp_path / name, (time.time() - 100, time.time() - 100))
    removed = remove_stale_temporaries(tmp_path, older_than=time.time() - 50)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == sorted(names[:2])


def test_a_reply_whose_only_block_is_empty_text_after_a_late_index_commits_nothing(make_agent):
    odd = reply(Text(""))
    for event in odd["events"]:
        if "index" in event:
            event["index"] = 1
    server = ScriptedServer([odd, reply(Raw({"type": "text", "text": "fine"}))])
    with server:
        agent, _ = make_agent(server)
        agent.send("one")
        assert agent.history == [{"role": "user", "content": [{"type": "text", "text": "one"}]}]
        assert agent.send("two").ok
    assert server.requests[1]["body"]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}]


@pytest.mark.process
def test_two_prompts_in_one_workspace_both_keep_their_lines(workspace):
    # Each process reads its history, then one line is typed (readline records what input() read).
    script = ("import builtins, readline, sys; from pathlib import Path\n"
              "from midstream.tools.cli.prompt import Prompt\n"
              "prompt = Prompt(Path(sys.argv[1]))\n"
              "builtins.input = lambda _: (readline.add_history(sys.argv[2]), sys.argv[2])[1]\n"
              "prompt.read()\n")
    first = subprocess.Popen([sys.executable, "-c", script, str(workspace), "from the first agent"],
                             env=program_env(), stdin=subprocess.PIPE)
    subprocess.run([sys.executable, "-c", script, str(workspace), "from the second agent"], env=program_env(),
                   check=True)
    first.communicate(timeout=30)
    from midstream.tools.cli.prompt import Prompt

    lines = Prompt(workspace).history_file.read_text().splitlines()
    assert sorted(line for line in lines if "agent" in line) == ["from the first agent", "from the second agent"]


def test_duplicate_tool_ids_in_one_reply_are_retried_and_the_first_call_reused(make_agent, workspace):
    dup = reply(ToolUse("t1", "record", {"label": "A"}), ToolUse("t1", "record", {"label": "B"}))
    server = ScriptedServer([dup, reply(ToolUse("t1", "record", {"label": "A"}), ToolUse("t2", "record",
                                                                                         {"label": "B"})),
                             reply(Text("done"))])
    with server:
        agent, _ = make_agent(server)
        assert agent.send("go").ok
    assert server.log.count("start:A") == 1 and server.log.count("start:B") == 1
    assert history_problems(agent.history) == []


def test_a_command_result_never_claims_a_cleanup_that_did_not_happen(workspace):
    from midstream.tools.registry import Decision, ToolContext
    from midstream.tools.shell import bash

    marker = f"midstream-test-{uuid.uuid4().hex}"
    ctx = ToolContext(workspace, report_progress=lambda line: None, decision=Decision(isolation="none"))
    try:
        result = bash.run(ctx, {"command": f"setsid -f python3 -c 'import time; time.sleep(60)' {marker}; echo ok"})
        assert "still running" in result.content and "were stopped" not in result.content
    finally:
        subprocess.run(["pkill", "-f", marker])


def test_crash_records_name_only_calls_of_a_reply_that_never_completed(workspace):
    transcript = Transcript.create(workspace, "m")
    transcript.append(USER)
    transcript.note("call_started", id="t1", what="bash early")  # dispatched mid-stream, before the commit
    transcript.append(_use("t1", "t2"))
    transcript.note("call_started", id="t2", what="bash late")  # its thread was slower than the commit
    transcript.note("file_changed", id="t2", path="a.txt")
    transcript.append(_answers("t1", "t2"))
    transcript.note("call_started", id="t3", what="bash never committed")
    transcript.note("file_changed", id="t3", path="b.txt")
    transcript.close()
    reopened = Transcript(transcript.path)
    history, crashed = reopened.resume()
    reopened.close()
    assert crashed == ("before the agent exited, a reply that never completed had started bash never committed "
                       "(outcome unknown) and changed b.txt")
    assert "bash never committed" in history[-1]["content"][-1]["text"]
    again = Transcript(transcript.path)
    assert again.resume()[1] is None  # told once
    again.close()


# -- /resume takes the session lock; compaction and clearing records replay with repair; a sealed path
# swapped for a link is kept, not restored

USE = {"role": "assistant", "content": [{"type": "tool_use", "id": "t9", "name": "bash", "input": {}}]}


def test_slash_resume_of_a_session_open_elsewhere_is_refused_and_keeps_the_current_one(make_agent, workspace,
                                                                                      capsys):
    mine = Transcript.create(workspace, "m")
    other = Transcript.create(workspace, "m")
    other.append(USER)
    with ScriptedServer([]) as server:
        agent, renderer = make_agent(server, transcript=mine)
        session = Interactive(agent, renderer, TypeAhead(-1))
        session.resume(other.id)
        assert "open in another midstream" in capsys.readouterr().err
        assert agent.transcript is mine
        mine.append(USER)  # still ours, still open
        other.close()
        session.resume(other.id)
        assert agent.transcript is not None and agent.transcript.path == other.path
        assert agent.history == [USER]
        Transcript(mine.path).close()  # the session we left was let go


def test_compaction_and_cleared_records_replay_before_repair_and_the_repair_sticks(workspace):
    transcript = Transcript.create(workspace, "m")
    transcript.append({"role": "user", "content": [{"type": "text", "text": "old"}]})
    summary = {"role": "user", "content": [{"type": "text", "text": "summary"}]}
    answered = {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "bash", "input": {}}]}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "long output"}]}
    transcript.record("compaction", messages=[summary, answered, result])
    transcript.record("cleared", notes={"t1": "[cleared]"})
    transcript.append({"role": "assistant", "content": [{"type": "text", "text": "ok"}]})
    transcript.append(USER)
    transcript.append(USE)  # the agent died while t9 ran
    transcript.close()
    with transcript.path.open("a") as f:
        f.write('{"type": "message", "mess')  # torn
    reopened = Transcript(transcript.path)
    history, _ = reopened.resume()
    reopened.close()
    assert history_problems(history) == []
    assert history[0] == summary and history[2]["content"][0]["content"] == "[cleared]"
    last = history[-1]["content"][0]
    assert (last["type"], last["tool_use_id"], last["content"]) == ("tool_result", "t9", AGENT_EXITED)
    assert Transcript.load(transcript.path) == history
    records = [json.loads(line) for line in transcript.path.read_text().splitlines()]
    assert records[0]["type"] == "session" and {"role": "user", "content": [{"type": "text", "text": "old"}]} in [
        r.get("message") for r in records]  # what came before the compaction stays in the file
    assert os.stat(transcript.path).st_mode & 0o777 == 0o600


def test_a_rewriting_repair_is_one_compaction_record_appended(workspace):
    transcript = Transcript.create(workspace, "m")
    transcript.append(USER)
    transcript.append({"role": "assistant", "content": [{"type": "text", "text": ""}]})
    transcript.close()
    before = transcript.path.read_text()
    reopened = Transcript(transcript.path)
    history, _ = reopened.resume()
    reopened.close()
    after = transcript.path.read_text()
    assert after.startswith(before)  # appended, never rewritten
    added = [json.loads(line) for line in after[len(before):].splitlines()]
    assert [r["type"] for r in added] == ["compaction"] and added[0]["messages"] == history
    assert Transcript.load(transcript.path) == history


def test_a_sealed_path_whose_directory_became_a_link_is_kept_and_nothing_outside_is_touched(tmp_path):
    inside, outside = tmp_path / "ws" / "d", tmp_path / "outside"
    inside.mkdir(parents=True)
    outside.mkdir()
    (outside / "a.txt").write_text("theirs\n")
    target = inside / "a.txt"
    journal = UndoJournal()
    journal.record(target)
    target.write_text("tool\n")
    journal.seal(target)
    (inside / "a.txt").unlink()
    inside.rmdir()
    inside.symlink_to(outside)  # a command swapped the directory for a link
    assert journal.rollback() == []
    assert journal.kept == [target]
    assert (outside / "a.txt").read_text() == "theirs\n"
