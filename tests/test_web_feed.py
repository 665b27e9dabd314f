"""The browser view's server side without a browser: Markdown at awkward chunk boundaries, the hub's
numbering, replay and bounded queues, first-answer-wins questions, and who the server lets in."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time

import pytest
from midstream.tools.events import QuestionAsked, QuestionClosed, TextDelta, ToolAsking, TurnEnded
from midstream.tools.questions import Questions
from midstream.tools.web.hub import Hub
from midstream.tools.web.markdown import StreamingMarkdown, render
from midstream.tools.web.server import TOKEN_HEADER, WebServer
from midstream.tools.web.view import View

from tests.helpers import wait_until

SEGMENTS = ["# Plan\n\n", "First **bold** step,\nsecond line.\n\n", "```python\nx = 1\n\ny = 2\n```\n\n",
            "- one\n- two\n\n", "| a | b |\n|---|---|\n| 1 | 2 |\n\n", "last line without a newline"]
STORY = "".join(SEGMENTS)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
def test_streamed_markdown_is_cut_at_blank_lines_outside_fences_whatever_the_chunks(size):
    streaming = StreamingMarkdown()
    for start in range(0, len(STORY), size):
        streaming.feed(STORY[start:start + size])
    streaming.finish()
    assert streaming.segments == [render(segment) for segment in SEGMENTS]
    assert streaming.chars == len(STORY)
    whole = "".join(streaming.segments)
    assert "<h1>Plan</h1>" in whole and "<strong>bold</strong>" in whole and "<table>" in whole
    assert '<code class="language-python">x = 1\n\ny = 2\n</code>' in whole  # a blank line inside a fence


def test_the_unfinished_line_is_never_rendered_and_finished_ones_are_at_once():
    streaming = StreamingMarkdown()
    assert streaming.feed("Hello **wor") == []
    (piece,) = streaming.feed("ld**\nand then")
    assert piece.html == "<p>Hello <strong>world</strong></p>\n" and piece.chars == len("Hello **world**\n")
    assert streaming.feed(" more") == []  # still the unfinished line: the page shows it as text


def test_the_models_html_and_script_links_are_escaped_not_run():
    html = render('<img src=x onerror=alert(1)> <script>alert(2)</script> [a](javascript:alert(3)) '
                  '![i](http://evil.example/p.png)')
    assert "<img src=x" not in html and "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript:' not in html
    # A remote image stays markup; the page's Content-Security-Policy (img-src 'self' data:) refuses to load it.


def test_every_record_is_numbered_and_a_reconnect_replays_exactly_what_it_missed():
    hub = Hub()
    for n in range(5):
        hub.show(TextDelta(0, f"t{n}"))
    start, subscriber = hub.subscribe(last_id=None)
    (snapshot,) = start
    assert snapshot.startswith(f"id: {hub.last_id}\n".encode()) and b'"event": "Snapshot"' in snapshot
    seen = hub.last_id
    hub.show(TextDelta(0, "t5"))
    hub.show(TextDelta(0, "t6"))
    replay, _ = hub.subscribe(last_id=seen)
    assert [_data(f)["text"] for f in replay if _data(f)["event"] == "TextDelta"] == ["t5", "t6"]
    assert [int(f.split(b"\n")[0][4:]) for f in replay] == list(range(seen + 1, hub.last_id + 1))
    live = subscriber.take(0)
    assert [_data(f)["text"] for f in live or [] if _data(f)["event"] == "TextDelta"] == ["t5", "t6"]
    later, _ = hub.subscribe(last_id=hub.last_id + 50)  # an id from another session: a fresh snapshot
    assert _data(later[0])["event"] == "Snapshot"


def _data(frame: bytes) -> dict:
    return json.loads(frame.decode().split("data: ", 1)[1])


def test_a_tab_that_stops_reading_is_cut_off_and_never_holds_the_loop_back():
    hub = Hub()
    _, stuck = hub.subscribe(None, limit=50)
    _, reading = hub.subscribe(None, limit=50)
    started = time.monotonic()
    for n in range(2_000):
        hub.show(TextDelta(0, "x"))
        if n % 10 == 0:
            reading.take(0)
    assert time.monotonic() - started < 30  # sanity only: nothing waited on the stuck tab
    assert stuck.cut and stuck.take(0) is None
    assert not reading.cut and hub.subscribers() == 1


def test_the_snapshot_holds_the_conversation_so_far_and_every_open_question():
    history = [{"role": "user", "content": [{"type": "text", "text": "fix it"}]},
               {"role": "assistant", "content": [{"type": "text", "text": "Done, **fixed**."}]}]
    hub = Hub(View(history, {"model": "m"}))
    hub.show(ToolAsking("c1", "write_file", {"path": "a.txt", "content": "new\n"}, "/nonexistent"))
    hub.show(QuestionAsked("q1", "c1", "Writing a.txt?", ("yes", "no", "always")))
    start, _ = hub.subscribe(None)
    snapshot = _data(start[0])
    assert [e["kind"] for e in snapshot["entries"]] == ["user", "text", "tool"]
    assert snapshot["entries"][1]["segments"] == ["<p>Done, <strong>fixed</strong>.</p>\n"]
    assert snapshot["questions"] == [{"id": "q1", "call_id": "c1", "text": "Writing a.txt?",
                                      "answers": ["yes", "no", "always"]}]
    hub.show(QuestionClosed("q1", "c1", "yes", "browser"))
    assert _data(hub.subscribe(None)[0][0])["questions"] == []


def test_the_first_answer_wins_and_every_surface_hears_who_gave_it():
    shown: list = []
    questions = Questions(shown.append)
    cancelled = threading.Event()
    answers: list[str] = []
    asking = threading.Thread(target=lambda: answers.append(questions.ask("Writing a.txt?", cancelled)))
    asking.start()
    assert wait_until(lambda: questions.pending())
    (question,) = questions.pending()
    results = []
    racers = [threading.Thread(target=lambda by=by: results.append((by, questions.answer(question.id, "yes", by))))
              for by in ("browser", "terminal")]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    asking.join(5)
    assert sorted(ok for _, ok in results) == [False, True]
    winner = next(by for by, ok in results if ok)
    assert answers == ["yes"] and questions.pending() == []
    assert shown[-1] == QuestionClosed(question.id, "", "yes", winner)
    assert not questions.answer(question.id, "no", "browser")  # closed: a late answer changes nothing


def test_ctrl_c_while_a_question_is_open_answers_no_and_closes_it_everywhere():
    shown: list = []
    questions = Questions(shown.append)
    cancelled = threading.Event()
    answers: list[str] = []
    asking = threading.Thread(target=lambda: answers.append(questions.ask("Running `rm x`?", cancelled)))
    asking.start()
    assert wait_until(lambda: questions.pending())
    cancelled.set()
    asking.join(5)
    assert answers == ["no"] and isinstance(shown[-1], QuestionClosed) and shown[-1].by == "cancelled"


# -- who gets in ------------------------------------------------------------------------------------


@pytest.fixture
def web():
    stops: list[str] = []
    questions = Questions(lambda event: None)
    server = WebServer(Hub(), stop=lambda: stops.append("stop") or True, questions=questions, keep_alive=0.2).start()
    server.stops = stops  # type: ignore[attr-defined]
    yield server
    server.close()


def _request(web: WebServer, method: str, path: str, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
    connection.putrequest(method, path, skip_host=True)
    for name, value in {"Host": f"127.0.0.1:{web.port}", **(headers or {})}.items():
        connection.putheader(name, value)
    if body is not None:
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    return connection.getresponse()


def _post_headers(web: WebServer, **extra: str) -> dict[str, str]:
    return {TOKEN_HEADER: web.token, "Origin": f"http://127.0.0.1:{web.port}", "Content-Type": "application/json",
            **extra}


def test_the_page_opens_with_the_token_and_with_nothing_else(web):
    assert _request(web, "GET", f"/?token={web.token}").status == 200
    assert _request(web, "GET", f"/?token={web.token}", {"Host": f"localhost:{web.port}"}).status == 200
    for path, headers in [("/", {}), ("/?token=wrong", {}), (f"/?token={web.token[:-1]}", {}),
                          (f"/?token={web.token}", {"Host": "evil.example"}),
                          (f"/?token={web.token}", {"Host": f"evil.example:{web.port}"}),
                          (f"/?token={web.token}", {"Host": "127.0.0.1:1"}),
                          (f"/events?token={web.token}", {"Host": "evil.example"}), ("/events", {})]:
        response = _request(web, "GET", path, headers)
        assert response.status == 403, (path, headers)
        assert b"Plan" not in response.read()


def test_changes_need_the_token_header_and_our_own_origin_and_refused_ones_change_nothing(web):
    body = b"{}"
    refused = [
        {},  # nothing
        {"Origin": f"http://127.0.0.1:{web.port}"},  # no token header
        _post_headers(web, Origin="http://evil.example"),  # a foreign page that somehow had the token
        _post_headers(web, Origin=f"http://127.0.0.1:{web.port + 1}"),  # another local server
        {k: v for k, v in _post_headers(web).items() if k != "Origin"},  # no Origin at all
        _post_headers(web, Host="evil.example"),  # DNS rebinding
        {**_post_headers(web), TOKEN_HEADER: "wrong"},
    ]
    for headers in refused:
        assert _request(web, "POST", "/api/stop", headers, body).status == 403, headers
    assert _request(web, "POST", f"/api/stop?token={web.token}", {"Origin": f"http://127.0.0.1:{web.port}"},
                    body).status == 403  # the token in the URL does not count for a change
    assert web.stops == []  # type: ignore[attr-defined]
    response = _request(web, "POST", "/api/stop", _post_headers(web), body)
    assert response.status == 200 and json.loads(response.read()) == {"stopped": True}
    assert web.stops == ["stop"]  # type: ignore[attr-defined]


def test_no_cors_headers_ever_and_a_preflight_is_refused(web):
    preflight = _request(web, "OPTIONS", "/api/stop", {"Origin": "http://evil.example",
                                                       "Access-Control-Request-Method": "POST",
                                                       "Access-Control-Request-Headers": TOKEN_HEADER})
    assert preflight.status == 403
    for response in (preflight, _request(web, "GET", f"/?token={web.token}", {"Origin": "http://evil.example"})):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    page = _request(web, "GET", f"/?token={web.token}")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "img-src 'self' data:" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_answers_are_checked_and_a_malformed_body_is_refused(web):
    for body in (b"not json", b"[1, 2]", b'{"question": 3, "answer": "yes"}', b"x" * 5000):
        assert _request(web, "POST", "/api/answer", _post_headers(web), body).status in (400, 404)
    response = _request(web, "POST", "/api/answer", _post_headers(web), b'{"question": "q999", "answer": "yes"}')
    assert response.status == 409


def test_the_token_never_reaches_the_log(web, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    _request(web, "GET", f"/?token={web.token}").read()
    _request(web, "GET", "/?token=wrong").read()
    _request(web, "GET", f"/nope?token={web.token}").read()
    raw = socket.create_connection(("127.0.0.1", web.port))
    raw.sendall(f"GARBAGE /?token={web.token} HTTP/1.1\r\n\r\n".encode())  # a request the server cannot parse
    raw.recv(4096)
    raw.close()
    assert web.token not in caplog.text
    assert web.token not in capfd.readouterr().err  # http.server's own request log goes to stderr


def test_the_stream_has_an_id_on_every_event_and_keep_alive_comments(web):
    connection = socket.create_connection(("127.0.0.1", web.port), timeout=5)
    connection.sendall(f"GET /events?token={web.token} HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\n\r\n".encode())
    assert wait_until(lambda: web.hub.subscribers() == 1)  # live from here on, after the snapshot
    web.hub.show(TextDelta(0, "hello"))
    web.hub.show(TurnEnded("end_turn", True))
    received = b""
    deadline = time.monotonic() + 5
    while b": keep-alive" not in received and time.monotonic() < deadline:
        received += connection.recv(65536)
    connection.close()
    head, _, stream = received.partition(b"\r\n\r\n")
    assert b"text/event-stream" in head and b"Access-Control" not in head
    messages = [m for m in stream.split(b"\n\n") if m.strip() and not m.startswith((b":", b"retry"))]
    assert [json.loads(m.split(b"data: ", 1)[1])["event"] for m in messages][:3] == ["Snapshot", "TextDelta",
                                                                                    "TurnEnded"]
    assert all(m.startswith(b"id: ") for m in messages)
    assert b": keep-alive\n\n" in stream
    assert wait_until(lambda: web.hub.subscribers() == 0)  # the tab went away: its thread ended


def test_a_long_block_without_blank_lines_is_rendered_a_few_times_not_once_per_line():
    streaming = StreamingMarkdown()
    rendered = []
    for n in range(20_000):
        rendered += streaming.feed(f"- item {n} of a very long list\n")
    rendered += streaming.finish()
    assert len(rendered) < 200  # every line while it is short, then each time it has doubled
    assert streaming.segments[-1].count("<li>") == 20_000 and streaming.chars == sum(
        len(f"- item {n} of a very long list\n") for n in range(20_000))


def test_the_stream_carries_exactly_the_stream_json_lines_of_the_real_loop(workspace):
    import io

    from midstream.agent import Agent, AgentConfig
    from midstream.tools import builtin_tools
    from midstream.tools.registry import ToolRegistry
    from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply
    from midstream.tools.ui.stream_json import StreamJsonRenderer
    from midstream.tools.web.broadcast import Broadcast

    (workspace / "a.txt").write_text("alpha\n")
    server = ScriptedServer([reply(Text("Reading.\n\n"), ToolUse("r1", "read_file", {"path": "a.txt"})),
                             reply(Text("It says **alpha**."))])
    printed = io.StringIO()
    broadcast = Broadcast(StreamJsonRenderer(printed, model="m", session_id="s"))
    hub = Hub(View(session={"model": "m", "session_id": "s"}))
    broadcast.add(hub.show)
    with server:
        agent = Agent(AgentConfig(workspace=workspace, base_url=server.url, api_key="k", model="m",
                                  system_prompt="t", prompt_cache=False, tell_date=False),
                      tools=ToolRegistry(builtin_tools()), renderer=broadcast)
        try:
            agent.send("read a.txt")
        finally:
            agent.close()
    start, _ = hub.subscribe(last_id=0)
    page_only = {"Rendered", "SessionUsage", "ToolPreview", "Note"}
    streamed = [_data(f) for f in start if _data(f)["event"] not in page_only]
    lines = [json.loads(line) for line in printed.getvalue().splitlines()]

    def same(record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in ("t", "duration_ms", "duration_api_ms")}

    assert [same(r) for r in streamed] == [same(r) for r in lines]
    assert all(isinstance(r["t"], float) for r in streamed)
    assert {"assistant", "user", "result", "event"} <= {r["type"] for r in streamed}


def test_a_resumed_conversation_shows_what_the_person_typed_not_midstreams_notes():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "<context>Today's date is 2026-12-01.</context>"},
                                     {"type": "text", "text": "run it"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "bash",
                                           "input": {"command": "sleep 30"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "interrupted",
                                      "is_error": True},
                                     {"type": "text", "text": "[The person interrupted this turn. Tool results …]"}]},
    ]
    entries = View(history).snapshot()["entries"]
    assert [(e["kind"], e.get("text")) for e in entries if e["kind"] != "tool"] == [
        ("user", "run it"), ("note", "[The person interrupted this turn. Tool results …]")]
    (card,) = [e for e in entries if e["kind"] == "tool"]
    assert card["input"] == {"command": "sleep 30"} and card["result"] == {"content": "interrupted", "is_error": True}
