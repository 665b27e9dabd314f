"""Wait or stop: one policy for the turn and the summary request. A retry-after beyond the cap
ends the try at once with one line naming the wait; backoff never exceeds its bound, however many
tries; /retry works once the attempts ran out."""

from __future__ import annotations

import io

import pytest
from midstream.tools.testing.scripted_server import ScriptedServer, Text, reply
from midstream.tools.ui.render import PlainRenderer
from midstream.tools.wire.model import RetryableModelError
from midstream.tools.wire.retry import RetryPolicy

BUSY = {"status": 529, "headers": {"retry-after": "99999"}, "error": {"type": "overloaded_error", "message": "b"}}


def test_a_summary_asked_to_wait_too_long_fails_at_once_with_one_line(make_agent):
    server = ScriptedServer([reply(Text("hello")), BUSY, reply(Text("never asked"))])
    err = io.StringIO()
    with server:
        agent, _ = make_agent(server, max_attempts=5)
        agent.ledger.renderer = PlainRenderer(io.StringIO(), err)
        assert agent.send("hi").ok
        assert not agent.compact()
    assert len(server.requests) == 2  # no second try of the summary
    said = [line for line in err.getvalue().splitlines() if "asked to wait" in line]
    assert said == ["⚠ could not compact the conversation: HTTP 529 overloaded_error: b · the service asked to "
                    "wait 27.8 h before retrying; try again later"]


def test_a_turn_asked_to_wait_too_long_ends_without_a_second_request_and_retry_works(make_agent):
    server = ScriptedServer([BUSY, reply(Text("served at last"))])
    with server:
        agent, _ = make_agent(server, max_attempts=5)
        ended = agent.send("hi")
        assert not ended.ok and "asked to wait 27.8 h" in ended.message and len(server.requests) == 1
        assert agent.retry().ok
    assert agent.history[-1]["content"][0]["text"] == "served at last"


@pytest.mark.parametrize("attempt", [1, 2, 6, 64, 1025, 100_000])
def test_backoff_stays_within_its_bound_on_any_try(attempt):
    policy = RetryPolicy(attempts=attempt + 1, backoff_base=1.0, backoff_max=30.0, retry_after_max=300.0)
    shown, delay = policy.after(attempt, RetryableModelError("dropped"))
    assert delay is not None and 0 < delay <= 30.0
    shown, delay = policy.after(attempt, RetryableModelError("busy", retry_after=120.0))
    assert delay == 120.0  # the service's wait, under the cap, is honoured
