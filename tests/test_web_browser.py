"""The browser view in a real browser: Debian's chromium driven by Playwright, the real loop against
the scripted model server, and the real program in a pty where the terminal takes part."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pexpect
import pytest
from midstream.agent import Agent, AgentConfig
from midstream.tools import builtin_tools
from midstream.tools.cli.interrupts import interrupt_turn
from midstream.tools.events import TurnEnded
from midstream.tools.questions import Questions
from midstream.tools.registry import ToolRegistry
from midstream.tools.testing.scripted_server import ScriptedServer, Text, Thinking, ToolUse, reply
from midstream.tools.web.attach import BrowserView
from midstream.tools.web.broadcast import Broadcast

from tests.helpers import RecordingRenderer, program_env, wait_until

pytestmark = pytest.mark.process

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
SHOTS = os.environ.get("MIDSTREAM_SCREENSHOTS")  # a folder: keep the screenshots taken during turns


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A fresh headless chromium profile; never a downloaded browser."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1000, "height": 900})
        context.set_default_timeout(15_000)
        errors: list[str] = []
        context.on("weberror", lambda error: errors.append(str(error.error)))
        yield context
        context.close()
        assert errors == []  # the page's script never threw


class Session:
    """The real loop in this process, its events broadcast to the terminal stand-in and the browser view."""

    def __init__(self, server: ScriptedServer, workspace: Path, **config: Any) -> None:
        self.renderer = RecordingRenderer()
        broadcast = Broadcast(self.renderer)
        self.questions = Questions(broadcast.show)
        broadcast.add(self.questions.observe)
        settings = dict(workspace=workspace, base_url=server.url, api_key="sk-test", model="claude-test",
                        system_prompt="You are a test.", isolation="none", prompt_cache=False, tell_date=False)
        self.agent = Agent(AgentConfig(**(settings | config)), tools=ToolRegistry(builtin_tools()),
                           renderer=broadcast, confirm=self.questions.ask)
        self.view = BrowserView(broadcast, lambda: self.agent.history, stop=self.stop, questions=self.questions,
                                session=lambda: {"model": "claude-test", "mode": self.agent.gate.mode})
        self.view.open()
        self.url = self.view.server.url
        self.ended: list[TurnEnded] = []
        self.stopped_at: float | None = None

    def stop(self) -> bool:
        self.stopped_at = time.monotonic()
        interrupt_turn(self.agent)  # what the command line hands the server: Esc's effect
        return True

    def send(self, text: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: self.ended.append(self.agent.send(text)), daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.view.close()
        self.agent.close()


def _shot(page: Any, name: str, tmp_path: Path) -> None:
    path = Path(SHOTS) / f"{name}.png" if SHOTS else tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)


def _bars(page: Any) -> list[dict[str, str]]:
    return page.eval_on_selector_all(".bar", "xs => xs.map(x => ({...x.dataset}))")


def test_text_and_a_tools_live_output_appear_while_the_reply_streams_and_the_bar_shows_it(browser, workspace,
                                                                                            tmp_path):
    (workspace / "notes.txt").write_text("step 3 is the slow one\n")
    (workspace / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    story = "While the steps run: the notes say step 3 is the slow one, so I will watch it. " * 4  # ~3 s
    server = ScriptedServer([
        reply(Text("I'll read the notes and run the **steps** while I explain.\n\n", chunk=4, delay=0.03),
              ToolUse("r1", "read_file", {"path": "notes.txt"}),
              ToolUse("t1", "bash", {"command": "for i in 1 2 3 4; do echo step $i; sleep 0.4; done"}),
              Text(story, chunk=4, delay=0.04)),
        reply(ToolUse("e1", "edit_file", {"path": "calc.py", "old_string": "a - b", "new_string": "a + b"})),
        reply(Text("All **four** steps ran, and `add` adds.")),
    ])
    with server:
        session = Session(server, workspace)
        try:
            page = browser.new_page()
            page.goto(session.url)
            page.wait_for_selector("#state:text('idle')")
            turn = session.send("run the steps, then fix add")
            page.wait_for_selector(".card[data-id=t1] .target:text('for i in 1 2 3 4')")
            page.wait_for_selector(".card[data-id=t1] .out:text('step 2')")
            page.wait_for_function("() => [...document.querySelectorAll('.md')].some(m => "
                                   "m.textContent.includes('While the steps run'))")
            assert "sent:message_stop" not in server.log  # both were on the page before the reply ended
            _shot(page, "during-turn", tmp_path)
            turn.join(20)
            page.wait_for_selector(".md strong:text('four')")  # the last reply, its Markdown rendered
            page.wait_for_selector(".card[data-id=t1][data-state=ok]")
            assert "+    return a + b" in page.inner_text(".card[data-id=e1] .diff")  # the edit's diff, once done
            bars = _bars(page)
            stream = next(b for b in bars if b["kind"] == "stream")
            tool = next(b for b in bars if b["key"] == "t1")
            assert float(tool["start"]) < float(stream["end"])  # the tool started while the model still wrote
            assert float(tool["end"]) > float(stream["start"])
            assert "step 4" in page.inner_text(".card[data-id=t1] .out")
            assert session.ended[0].ok
        finally:
            session.close()


def test_two_tabs_show_the_same_and_a_tab_opened_mid_turn_catches_up(browser, workspace):
    server = ScriptedServer([
        reply(Thinking("The person wants the command run; say so first."),
              Text("First part, then a command.\n\n", chunk=6, delay=0.03),
              ToolUse("t1", "bash", {"command": "echo one; sleep 0.8; echo two"})),
        reply(Text("# Done\n\n- it ran\n- twice over\n", chunk=5, delay=0.03)),
    ])
    with server:
        session = Session(server, workspace)
        try:
            early = browser.new_page()
            early.goto(session.url)
            early.wait_for_selector("#state:text('idle')")
            turn = session.send("go")
            early.wait_for_selector(".card[data-id=t1] .out:text('one')")
            late = browser.new_page()  # joins mid-turn: a snapshot, then live events
            late.goto(session.url)
            late.wait_for_selector(".card[data-id=t1]")
            turn.join(20)
            for page in (early, late):
                page.wait_for_selector("#state:text('idle')")
                page.wait_for_selector(".md h1:text('Done')")
            assert early.inner_text("#log") == late.inner_text("#log")
            thinking = late.locator("details.thinking")
            assert thinking.get_attribute("open") is None  # folded until asked for
            assert "say so first" not in late.inner_text("#log")
            thinking.locator("summary").click()
            assert "say so first" in thinking.inner_text()
            assert [b["key"] for b in _bars(early)] == [b["key"] for b in _bars(late)]
            assert early.inner_text("#usage") == late.inner_text("#usage") != ""
            fresh = browser.new_page()  # and one that saw nothing of it: the snapshot alone
            fresh.goto(session.url)
            fresh.wait_for_selector(".md h1:text('Done')")
            assert fresh.inner_text("#log") == early.inner_text("#log")
        finally:
            session.close()


def test_a_tab_cut_off_mid_turn_reconnects_and_catches_up_with_what_it_missed(browser, workspace):
    server = ScriptedServer([
        reply(Text("One line after another.\n" * 30, chunk=8, delay=0.02),
              ToolUse("t1", "bash", {"command": "for i in 1 2 3; do echo tick $i; sleep 0.3; done"})),
        reply(Text("Finished **at last**.")),
    ])
    with server:
        session = Session(server, workspace)
        try:
            page = browser.new_page()
            page.goto(session.url)
            page.wait_for_selector("#state:text('idle')")
            turn = session.send("go")
            page.wait_for_function("() => [...document.querySelectorAll('.md')].some(m => "
                                   "m.textContent.includes('another'))")
            session.view.server.hub.close()  # every stream ends, as when a tab falls too far behind
            page.wait_for_selector("#state:text('reconnecting')")
            turn.join(20)
            page.wait_for_selector(".md strong:text('at last')")  # reconnected (Last-Event-ID) and caught up
            fresh = browser.new_page()
            fresh.goto(session.url)
            fresh.wait_for_selector(".md strong:text('at last')")
            assert page.inner_text("#log") == fresh.inner_text("#log")
            assert page.inner_text("#log").count("One line after another.") == 30  # nothing twice, nothing lost
        finally:
            session.close()


def test_stop_in_the_page_ends_a_sleep_30_at_once_and_the_next_request_is_valid(browser, workspace):
    server = ScriptedServer([
        reply(Text("Waiting a while."), ToolUse("t1", "bash", {"command": "echo started; sleep 30"})),
        reply(Text("Understood, stopped.")),
    ])
    with server:
        session = Session(server, workspace)
        try:
            page = browser.new_page()
            page.goto(session.url)
            turn = session.send("wait")
            page.wait_for_selector(".card[data-id=t1] .out:text('started')")
            page.click("#stop")
            turn.join(10)
            assert not turn.is_alive() and session.stopped_at is not None
            ended_after = time.monotonic() - session.stopped_at
            assert session.ended[0].stop_reason == "interrupted"
            assert ended_after < 3.0, ended_after  # `sleep 30` was stopped, not waited out (measured: bench_web)
            page.wait_for_selector(".card[data-id=t1][data-state=failed]")
            page.wait_for_selector("#stop:disabled")
            session.agent.send("what now?")
            messages = server.requests[-1]["body"]["messages"]
            uses = [b["id"] for m in messages if m["role"] == "assistant" for b in m["content"]
                    if b["type"] == "tool_use"]
            results = [b for m in messages if m["role"] == "user" for b in m["content"] if b["type"] == "tool_result"]
            assert uses == ["t1"] and [r["tool_use_id"] for r in results] == ["t1"] and results[0]["is_error"]
            assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        finally:
            session.close()


def test_a_destructive_commands_countdown_shows_in_the_page_and_its_stop_means_it_never_runs(browser, workspace,
                                                                                              tmp_path):
    (workspace / "build").mkdir()
    (workspace / "build" / "keep.txt").write_text("precious\n")
    server = ScriptedServer([reply(ToolUse("d1", "bash", {"command": "rm -rf build"})), reply(Text("Understood."))])
    with server:
        session = Session(server, workspace, grace_seconds=30.0)
        try:
            page = browser.new_page()
            page.goto(session.url)
            turn = session.send("clean up")
            countdown = page.wait_for_selector(".card[data-id=d1][data-state=grace] .countdown")
            assert "rm -rf build" in countdown.inner_text() and "runs in" in countdown.inner_text()
            assert "build" in countdown.inner_text().split("→", 1)[1]  # what it would destroy
            _shot(page, "countdown", tmp_path)
            assert "queued" in page.get_attribute(".bar[data-key=d1]", "class")  # waiting out its window
            page.click(".card[data-id=d1] .countdown button")
            turn.join(10)
            assert not turn.is_alive() and session.ended[0].stop_reason == "interrupted"
            assert (workspace / "build" / "keep.txt").read_text() == "precious\n"  # it never ran
            page.wait_for_selector(".card[data-id=d1][data-state=failed]")
        finally:
            session.close()


def test_a_foreign_page_can_neither_stop_nor_answer_even_knowing_the_token(browser, workspace):
    server = ScriptedServer([reply(Text("x"))])
    with server:
        session = Session(server, workspace)
        port, token = session.view.server.port, session.view.server.token
        attack = f"""<script>
          const target = "http://127.0.0.1:{port}";
          const results = [];
          const tries = [
            fetch(target + "/api/stop", {{method: "POST", headers: {{"X-Midstream-Token": "{token}",
              "Content-Type": "application/json"}}, body: "{{}}"}}),
            fetch(target + "/api/stop?token={token}", {{method: "POST", mode: "no-cors", body: "{{}}"}}),
            fetch(target + "/api/answer?token={token}", {{method: "POST", mode: "no-cors",
              body: '{{"question": "q1", "answer": "yes"}}'}}),
            fetch(target + "/events?token={token}").then(r => r.text()),
          ];
          Promise.allSettled(tries).then(r => {{ document.title = "done:" +
            r.map(x => x.status + ":" + (x.reason ? "blocked" : "")).join(","); }});
        </script>"""
        evil = _serve_once(attack.encode())
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
            page.wait_for_function("() => document.title.startsWith('done:')")
            outcomes = page.title().removeprefix("done:").split(",")
            assert outcomes[0] == "rejected:blocked"  # the custom header needs a preflight, which is refused
            assert outcomes[3] == "rejected:blocked"  # reading the stream cross-origin: no CORS headers, no data
            assert session.stopped_at is None  # the no-cors POSTs reached the server and were refused
        finally:
            evil.shutdown()
            evil.server_close()
            session.close()


def _serve_once(page: bytes) -> ThreadingHTTPServer:
    """Another web page on another loopback port: the attacker's site in the person's own browser."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd


# -- the real program, its terminal and the page ---------------------------------------------------


class Program:
    """``midstream --web`` in a pty: the person's terminal, beside the page."""

    def __init__(self, server: ScriptedServer, workspace: Path, *args: str) -> None:
        env = program_env() | {"ANTHROPIC_BASE_URL": server.url, "TERM": "xterm"}
        self.child = pexpect.spawn(sys.executable, ["-m", "midstream", "--isolation", "none", "--web", *args],
                                   cwd=str(workspace), env=env, dimensions=(30, 120), timeout=20,
                                   encoding="utf-8")
        if os.environ.get("MIDSTREAM_PTY_LOG"):
            self.child.logfile_read = open(os.environ["MIDSTREAM_PTY_LOG"], "w")  # noqa: SIM115
        self.child.expect(r"browser view: (http://127\.0\.0\.1:\d+/\?token=[\w-]+)")
        self.url = self.child.match.group(1)
        self.child.expect("› ")

    def close(self) -> None:
        """Leave (Ctrl-D); a program still busy with a question is ended rather than masking a failure."""
        if self.child.isalive():
            self.child.sendeof()
            if self.child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=10) == 1:
                self.child.terminate(force=True)
        self.child.close()


def test_a_question_reaches_every_tab_and_the_terminal_and_the_first_answer_closes_it_everywhere(browser, workspace):
    server = ScriptedServer([
        reply(ToolUse("w1", "write_file", {"path": "approved.txt", "content": "from the page\n"})),
        reply(ToolUse("w2", "write_file", {"path": "refused.txt", "content": "no\n"})),
        reply(Text("Both asked.")),
    ])
    with server:
        program = Program(server, workspace, "--mode", "ask")
        try:
            watching = browser.new_page()
            watching.goto(program.url)
            watching.wait_for_selector("#state:text('idle')")
            program.child.sendline("write two files")
            program.child.expect(re.escape("Writing approved.txt? [y]es / [n]o / [a]lways this session: "))
            watching.wait_for_selector(".question:has-text('Writing approved.txt?')")
            late = browser.new_page()  # opened while the question waits: it is there too
            late.goto(program.url)
            late.wait_for_selector(".question:has-text('Writing approved.txt?')")
            assert "+from the page" in late.inner_text(".question .diff")  # what it would write
            late.click(".question button.yes")
            program.child.expect(re.escape("yes (answered in the browser)"))  # the terminal's question closed
            watching.wait_for_selector(".question:has-text('Writing approved.txt?')", state="detached")
            assert wait_until(lambda: (workspace / "approved.txt").exists())
            # The next question, answered in the terminal: the page's copy closes.
            program.child.expect(re.escape("Writing refused.txt? [y]es / [n]o / [a]lways this session: "))
            watching.wait_for_selector(".question:has-text('Writing refused.txt?')")
            program.child.sendline("n")
            for page in (watching, late):
                page.wait_for_selector(".question", state="detached")
                page.wait_for_selector(".md:has-text('Both asked.')")
            program.child.expect("Both asked")
            assert not (workspace / "refused.txt").exists()
            assert (workspace / "approved.txt").read_text() == "from the page\n"
        finally:
            program.close()


def test_the_page_stops_the_real_program_as_esc_does(browser, workspace):
    server = ScriptedServer([
        reply(ToolUse("t1", "bash", {"command": "echo begun; sleep 30"})),
        reply(Text("Fine, stopped.")),
    ])
    with server:
        program = Program(server, workspace, "--mode", "auto")
        try:
            page = browser.new_page()
            page.goto(program.url)
            program.child.sendline("sleep a while")
            page.wait_for_selector(".card[data-id=t1] .out:text('begun')")
            clicked = time.monotonic()
            page.click("#stop")
            program.child.expect("interrupted")
            assert time.monotonic() - clicked < 5.0  # not the 30 s of the sleep
            program.child.expect("› ")
            program.child.sendline("and now?")
            program.child.expect("Fine, stopped")
            program.child.sendline("/web")  # asked again: the same view, the same line
            program.child.expect(re.escape(f"browser view: {program.url}"))
            messages = server.requests[-1]["body"]["messages"]
            assert [m["role"] for m in messages] == ["user", "assistant", "user"]
            (result,) = [b for b in messages[2]["content"] if b["type"] == "tool_result"]
            assert result["tool_use_id"] == "t1" and result["is_error"]
        finally:
            program.close()


def test_a_web_port_that_cannot_be_had_is_one_line_and_exit_2(workspace):
    import socket
    import subprocess

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    env = program_env() | {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    try:
        for port in (str(taken.getsockname()[1]), "99999", "eighty"):
            done = subprocess.run([sys.executable, "-m", "midstream", "--web", "--web-port", port, "-p", "hi",
                                   "--isolation", "none"], capture_output=True, text=True, env=env, cwd=workspace,
                                  timeout=60)
            lines = [line for line in done.stderr.splitlines() if "warning" not in line]
            assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("midstream: "), done.stderr
            assert "Traceback" not in done.stderr
    finally:
        taken.close()
