"""Prompt caching, priced: the input cost of a 10-turn session with and without cache breakpoints.

    python tests/bench_cache.py

The session is the one the tests use: a ~6,000-token system prompt, ten user messages, each
answered with one tool call and a closing reply (20 requests). Token counts come from the scripted
server's model of the API's cache accounting (tools/conversation/cache_model.py); prices are list prices for
Sonnet (input $3/MTok, cache write 1.25x, cache read 0.1x). Never fails.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

from midstream.agent import Agent, AgentConfig  # noqa: E402
from midstream.tools.conversation.cache_model import CacheModel  # noqa: E402
from midstream.tools.conversation.usage import Usage  # noqa: E402
from midstream.tools.registry import ToolRegistry  # noqa: E402
from midstream.tools.ui.events import Event, TurnCommitted  # noqa: E402
from midstream.tools.wire.scripted_server import ScriptedServer, Text, ToolUse, reply  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.* helpers
from tests.conftest import recording_tool  # noqa: E402
from tests.test_prompts_and_cache import LONG_SYSTEM  # noqa: E402

MODEL = "claude-sonnet-5-5"
TURNS = 10


class Usages:
    def __init__(self) -> None:
        self.total = Usage()
        self.lock = threading.Lock()

    def show(self, event: Event) -> None:
        if isinstance(event, TurnCommitted):
            with self.lock:
                self.total += Usage.from_api(event.usage)


def session(cache: bool) -> Usage:
    replies = []
    for turn in range(TURNS):
        replies += [reply(Text(f"Step {turn}.\n"), ToolUse(f"t{turn}", "record", {"label": str(turn)})),
                    reply(Text(f"Step {turn} done."))]
    server = ScriptedServer(replies, cache=CacheModel())
    usages = Usages()
    with server, tempfile.TemporaryDirectory() as workspace:
        config = AgentConfig(workspace=Path(workspace), base_url=server.url, api_key="k", model=MODEL,
                             system_prompt=LONG_SYSTEM, prompt_cache=cache, tell_date=False)
        agent = Agent(config, tools=ToolRegistry([recording_tool(server.log)]), renderer=usages)
        for turn in range(TURNS):
            agent.send(f"Do step {turn}.")
        agent.close()
    return usages.total


def main() -> None:
    without, with_cache = session(cache=False), session(cache=True)
    cost_without = without.cost(MODEL) - without.output * 15 / 1e6
    cost_with = with_cache.cost(MODEL) - with_cache.output * 15 / 1e6
    print(f"\nPrompt caching: {TURNS}-turn session, ~6,000-token system prompt, {2 * TURNS} requests, "
          f"input side at Sonnet list prices\n")
    print("| | prompt tokens | read from cache | written to cache | uncached input | input cost | vs no cache |")
    print("|---|---|---|---|---|---|---|")
    for label, usage, cost in (("no breakpoints", without, cost_without), ("midstream", with_cache, cost_with)):
        print(f"| {label} | {usage.prompt_tokens:,} | {usage.cache_read:,} | {usage.cache_write:,} | "
              f"{usage.input:,} | ${cost:.4f} | {cost / cost_without:.2f}x |")
    print(f"\noverall hit ratio with breakpoints: {with_cache.hit_ratio:.3f}")


if __name__ == "__main__":
    main()
