"""Browser view benchmarks: what the hub costs the loop per event, and how fast the page's stop acts.
Prints tables; never fails.

    python tests/bench_web.py
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from midstream.agent import Agent, AgentConfig  # noqa: E402
from midstream.tools import builtin_tools  # noqa: E402
from midstream.tools.cli.interrupts import interrupt_turn  # noqa: E402
from midstream.tools.events import TextDelta, ToolRunning  # noqa: E402
from midstream.tools.questions import Questions  # noqa: E402
from midstream.tools.registry import ToolRegistry  # noqa: E402
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply  # noqa: E402
from midstream.tools.web.attach import BrowserView  # noqa: E402
from midstream.tools.web.broadcast import Broadcast  # noqa: E402
from midstream.tools.web.hub import Hub  # noqa: E402
from midstream.tools.web.server import TOKEN_HEADER  # noqa: E402

from tests.bench_engine import table  # noqa: E402
from tests.helpers import RecordingRenderer  # noqa: E402

EVENTS = 20_000


def _per_event_us(show, events: int = EVENTS) -> float:
    piece = TextDelta(0, "a few words ")
    line = TextDelta(0, "and a finished line\n")
    started = time.perf_counter()
    for n in range(events):
        show(line if n % 8 == 7 else piece)
    return (time.perf_counter() - started) / events * 1e6


def _drain(subscriber, stop: threading.Event) -> None:
    while not stop.is_set() and subscriber.take(0.05) is not None:
        pass


def bench_hub() -> None:
    """One text block of 20,000 deltas (every 8th ends a line: Markdown re-rendered), per subscriber count."""
    rows = []
    baseline = Broadcast(RecordingRenderer())
    rows.append(["no view (the Broadcast alone)", _per_event_us(baseline.show)])
    for readers, stuck in ((0, 0), (1, 0), (5, 0), (1, 1)):
        hub = Hub()
        broadcast = Broadcast(RecordingRenderer())
        broadcast.add(hub.show)
        stop = threading.Event()
        subscribers = [hub.subscribe(None)[1] for _ in range(readers + stuck)]

        threads = [threading.Thread(target=_drain, args=(s, stop), daemon=True) for s in subscribers[:readers]]
        for thread in threads:
            thread.start()
        cost = _per_event_us(broadcast.show)
        stop.set()
        hub.close()
        label = f"view with {readers} reading tab{'s' * (readers != 1)}" + (f", {stuck} stuck" if stuck else "")
        rows.append([label, cost])
    table(f"The loop's cost per event with the browser view ({EVENTS:,} text deltas, one block)",
          ["renderers", "µs per event"], rows)


def bench_stop(runs: int = 5) -> None:
    """From the page's POST /api/stop to the turn's end: while the reply streams, and during `sleep 30`."""
    rows = []
    for when in ("while the reply streams", "while `sleep 30` runs"):
        took = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as workspace:
                took.append(_one_stop(Path(workspace), streaming=when.startswith("while the reply")))
        rows.append([when, statistics.median(took), max(took)])
    table(f"Stop from the page: POST /api/stop to TurnEnded ({runs} runs)", ["when", "median ms", "max ms"], rows)


def _one_stop(workspace: Path, *, streaming: bool) -> float:
    if streaming:
        first = reply(Text("word " * 2000, chunk=5, delay=0.01))
    else:
        first = reply(ToolUse("t1", "bash", {"command": "sleep 30"}))
    server = ScriptedServer([first, reply(Text("ok"))])
    with server:
        recording = RecordingRenderer()
        broadcast = Broadcast(recording)
        questions = Questions(broadcast.show)
        agent = Agent(AgentConfig(workspace=workspace, base_url=server.url, api_key="k", model="m",
                                  system_prompt="t", isolation="none", prompt_cache=False, tell_date=False),
                      tools=ToolRegistry(builtin_tools()), renderer=broadcast, confirm=questions.ask)
        view = BrowserView(broadcast, lambda: agent.history, stop=lambda: interrupt_turn(agent) or True,
                           questions=questions)
        view.open()
        ended: list[float] = []
        turn = threading.Thread(target=lambda: (agent.send("go"), ended.append(time.perf_counter())))
        turn.start()
        if streaming:
            while not recording.of(TextDelta):
                time.sleep(0.005)
        else:
            while not recording.of(ToolRunning):
                time.sleep(0.005)
            time.sleep(0.2)  # the command is really running
        connection = http.client.HTTPConnection("127.0.0.1", view.server.port)
        origin = f"http://127.0.0.1:{view.server.port}"
        started = time.perf_counter()
        connection.request("POST", "/api/stop", body=json.dumps({}), headers={
            TOKEN_HEADER: view.server.token, "Origin": origin, "Content-Type": "application/json"})
        connection.getresponse().read()
        turn.join(40)
        connection.close()
        view.close()
        agent.close()
        return (ended[0] - started) * 1000


def main() -> None:
    bench_hub()
    bench_stop()


if __name__ == "__main__":
    main()
