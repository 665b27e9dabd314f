"""Where issue 14 meets 12, 16 and 18: /resume takes the session lock; compaction and clearing
records replay with repair and write-back; a sealed path swapped for a link is kept, not restored."""

from __future__ import annotations

import json
import os

from midstream.sandbox.journal import UndoJournal
from midstream.tools.cli.repl import Interactive
from midstream.tools.cli.typeahead import TypeAhead
from midstream.tools.conversation.history import history_problems
from midstream.tools.conversation.transcript import AGENT_EXITED, Transcript
from midstream.tools.testing.scripted_server import ScriptedServer

USER = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
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
