"""Recorded Anthropic stream shapes go to history and back on the wire unchanged.

The files in tests/streams/ are SSE bodies with the shapes the API streams (server tool blocks,
citations, thinking with signatures, redacted thinking, compaction, fallback, and a block type no
one has heard of with a delta type to match); beside each is the content the API's own
non-streaming answer would hold. They are served byte for byte by the scripted server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from midstream.tools.conversation.history import history_problems
from midstream.tools.testing.scripted_server import ScriptedServer, Text, reply

STREAMS = Path(__file__).parent / "streams"


@pytest.mark.parametrize("name", sorted(p.stem for p in STREAMS.glob("*.sse")))
def test_a_recorded_stream_goes_to_history_and_back_unchanged(make_agent, name):
    expected = json.loads((STREAMS / f"{name}.json").read_text())
    recorded = (STREAMS / f"{name}.sse").read_text()
    server = ScriptedServer([{"sse": recorded}, reply(Text("next answer"))])
    with server:
        agent, _ = make_agent(server)
        assert agent.send("first").ok
        assert agent.history[1] == {"role": "assistant", "content": expected}
        assert agent.send("second").ok
    sent = server.requests[1]["body"]["messages"]
    assert sent[1] == {"role": "assistant", "content": expected}
    assert history_problems(sent) == []


@pytest.mark.parametrize("name", ["made_up_block", "compaction"])
def test_a_recorded_stream_split_at_every_few_bytes_assembles_the_same(make_agent, name):
    expected = json.loads((STREAMS / f"{name}.json").read_text())
    recorded = (STREAMS / f"{name}.sse").read_text().replace("\n", "\r")  # CR-only framing, too
    server = ScriptedServer([{"sse": recorded, "chunk": 7}])
    with server:
        agent, _ = make_agent(server)
        assert agent.send("first").ok
    assert agent.history[1]["content"] == expected
