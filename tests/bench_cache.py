"""Prompt caching, priced: the input cost of a 10-turn session with and without cache breakpoints,
and of a long session with and without clearing and compaction (tools/conversation/compaction.py).

    python tests/bench_cache.py

The session is the one the tests use: a ~6,000-token system prompt, ten user messages, each
answered with one tool call and a closing reply (20 requests). Token counts come from the scripted
server's model of the API's cache accounting (tools/testing/cache_model.py); prices are list prices for
Sonnet (input $3/MTok, cache write 1.25x, cache read 0.1x). Never fails.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

from midstream.agent import Agent, AgentConfig  # noqa: E402
from midstream.tools.conversation.compaction import SUMMARY_QUESTION  # noqa: E402
from midstream.tools.conversation.usage import Usage  # noqa: E402
from midstream.tools.events import Compacted, ContextCleared, Event, TurnCommitted  # noqa: E402
from midstream.tools.registry import Access, ToolContext, ToolRegistry, Wording, tool  # noqa: E402
from midstream.tools.testing.cache_model import CacheModel  # noqa: E402
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.* helpers
from tests.helpers import LONG_SYSTEM, recording_tool  # noqa: E402

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


RESULT_CHARS = 2_000  # ~500 tokens per tool result: 300 of them are ~4 windows


@tool(wording=Wording("Fetching", "Fetched", target="page"), access=lambda ws, args: Access.reading("pages"))
def fetch(ctx: ToolContext, page: int) -> str:
    """Fetch one page."""
    return (f"page {page}: " + "lorem ipsum dolor sit amet " * 100)[:RESULT_CHARS]


class Collect:
    def __init__(self, events: list[Event]) -> None:
        self.show = events.append


LONG_REQUESTS = 300
LONG_WINDOW = 40_000


def long_session(compact: bool, clear: bool = True) -> tuple[list[dict], list[Event]]:
    """One user message per 30 requests, each request a tool call whose result is RESULT_CHARS long."""
    count = {"normal": 0}

    def respond(body: dict) -> dict:
        last = body["messages"][-1]["content"]
        if any(b.get("type") == "text" and b["text"].startswith(SUMMARY_QUESTION) for b in last):
            return reply(Text("## Task\nFetch the pages.\n## Files\nNone changed.\n## Next step\nGo on."))
        count["normal"] += 1
        if count["normal"] % 30 == 0:
            return reply(Text("Done with these pages."))
        return reply(ToolUse(f"call{count['normal']}", "fetch", {"page": count["normal"]}))

    events: list[Event] = []
    # Without compaction the scripted server has no limit, to show where the session would go; a real
    # service refuses every request past the window from then on.
    server = ScriptedServer([], cache=CacheModel(), respond=respond, context_limit=LONG_WINDOW if compact else None)
    with server, tempfile.TemporaryDirectory() as workspace:
        config = AgentConfig(workspace=Path(workspace), base_url=server.url, api_key="k", model=MODEL,
                             system_prompt=LONG_SYSTEM, tell_date=False, max_tokens=4000, max_requests=40,
                             context_window=LONG_WINDOW, compact=compact)
        agent = Agent(config, tools=ToolRegistry([fetch]), renderer=Collect(events))
        if not clear:
            agent.context.policy.clear_at_least = 2.0  # never worth it: compaction only
        for turn in range(LONG_REQUESTS // 30):
            agent.send(f"Fetch the next pages ({turn}).")
        agent.close()
    notes = 0
    for record in server.requests:
        last = record["body"]["messages"][-1]["content"]
        record["summary"] = any(b.get("type") == "text" and b["text"].startswith(SUMMARY_QUESTION) for b in last)
        now = str(record["body"]["messages"]).count("[Cleared to save context")
        record["after_clearing"] = now > notes
        notes = now
    return server.requests, events


def _cost(usage: Usage) -> float:
    return usage.cost(MODEL) or 0.0


def long_main() -> None:
    without, _ = long_session(compact=False)
    with_, events = long_session(compact=True)
    only, only_events = long_session(compact=True, clear=False)
    print(f"\nLong session: {LONG_REQUESTS} tool requests, ~500-token results (~{LONG_REQUESTS * 500 // LONG_WINDOW}x "
          f"the window), ~6,000-token system prompt, a {LONG_WINDOW:,}-token window, Sonnet list prices\n")
    print("| request | prompt tokens, no compaction | cost | prompt tokens, clearing + compaction | cost |")
    print("|---|---|---|---|---|")
    plain = [r for r in without if not r["summary"]]
    kept = [r for r in with_ if not r["summary"]]
    for n in [1, 25, 50, 75, 100, 125, 150, 175, 200, 225, 250, 275, 300]:
        a, b = Usage.from_api(plain[n - 1]["usage"]), Usage.from_api(kept[n - 1]["usage"])
        over = " (over the window)" if a.prompt_tokens > LONG_WINDOW else ""
        print(f"| {n} | {a.prompt_tokens:,}{over} | ${_cost(a):.4f} | {b.prompt_tokens:,} | ${_cost(b):.4f} |")
    print("\n| | requests | prompt tokens | cache read | cache written | uncached | cost | hit ratio | "
          "requests over the window |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, records in (("no compaction", without), ("clearing + compaction", with_),
                           ("compaction only", only)):
        total = Usage()
        for record in records:
            total += Usage.from_api(record["usage"])
        over = sum(Usage.from_api(r["usage"]).prompt_tokens > LONG_WINDOW for r in records)
        print(f"| {label} | {len(records)} | {total.prompt_tokens:,} | {total.cache_read:,} | {total.cache_write:,} | "
              f"{total.input:,} | ${_cost(total):.2f} | {total.hit_ratio:.3f} | {over} |")
    cleared, compacted = [e for e in events if isinstance(e, ContextCleared)], [e for e in events if
                                                                               isinstance(e, Compacted)]
    print(f"\n{len(cleared)} clearings, {len(compacted)} compactions "
          f"(tokens before -> after: {', '.join(f'{c.before:,}->{c.after:,}' for c in compacted)}); "
          f"compaction only: {sum(isinstance(e, Compacted) for e in only_events)} compactions")
    after_clearing = [Usage.from_api(r["usage"]).hit_ratio or 0.0 for r in with_
                      if r["body"]["messages"] and r.get("after_clearing")]
    if after_clearing:
        print(f"hit ratio of the request right after a clearing: min {min(after_clearing):.2f}, "
              f"mean {sum(after_clearing) / len(after_clearing):.2f} (the cache is rebuilt once per clearing)")
    print("\nHit ratio around each compaction (request 0 is the summary request):\n")
    print("| session | compaction | -1 | 0 (summary) | +1 | +2 | +3 |")
    print("|---|---|---|---|---|---|---|")
    for label, records in (("clearing + compaction", with_), ("compaction only", only)):
        for number, index in enumerate(i for i, r in enumerate(records) if r["summary"]):
            ratios = []
            for offset in range(-1, 4):
                record = records[index + offset] if 0 <= index + offset < len(records) else None
                ratio = Usage.from_api(record["usage"]).hit_ratio if record else None
                ratios.append(f"{ratio:.2f}" if ratio is not None else "-")
            print(f"| {label} | {number + 1} | " + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()
    long_main()
