"""Slash commands and ``!command``: caught at the prompt, never sent to the model as text.

``COMMANDS`` is the table: one ``Command`` per name, with its usage line and handler. A handler
gets the interactive session and the rest of the line, and returns ``LEAVE`` to end the session.
``!command`` runs a shell command through the same shell tool (and sandbox) the model uses,
shows its output, and hands it to the model at the start of the next message, as Claude Code's
bash mode does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from midstream.sandbox.permissions import MODES
from midstream.tools.conversation.compaction import context_window_for
from midstream.tools.conversation.transcript import Transcript
from midstream.tools.registry import Decision, ToolContext, ToolResult
from midstream.tools.ui.sanitise import shown

if TYPE_CHECKING:
    from midstream.tools.cli.repl import Interactive

__all__ = ["COMMANDS", "LEAVE", "Command", "dispatch", "is_command"]

LEAVE = "leave"


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    run: Callable[[Interactive, str], str | None]


def _help(session: Interactive, rest: str) -> None:
    import shutil
    import textwrap

    commands = list(dict.fromkeys(COMMANDS.values()))  # /quit is /exit: listed once
    rows = [(c.usage + (" (/quit)" if c.name == "exit" else ""), c.help) for c in commands]
    rows.append(("!COMMAND", "run a shell command in the sandbox; the model sees its output next"))
    width = max(len(usage) for usage, _ in rows)
    columns = max(40, shutil.get_terminal_size((100, 24)).columns - 1)
    lines = []
    for usage, text in rows:  # a help text that wraps keeps its column
        wrapped = textwrap.wrap(text, max(20, columns - width - 4)) or [""]
        lines.append(f"  {usage:<{width}}  {wrapped[0]}")
        lines += [f"  {'':<{width}}  {more}" for more in wrapped[1:]]
    session.say("Commands:\n" + "\n".join(lines) + "\n" + KEYS_HELP, style="")


KEYS_HELP = """Keys: Enter sends; Alt-Enter, or \\ then Enter, starts a new line.
      Tab completes /commands and paths; @path attaches a file or a listing.
      A long paste is one [pasted N lines]: Ctrl-O shows it in the line.
      Ctrl-O on an empty line opens the last fold (… N more lines) whole;
      /show N an older one, /transcript everything. In the pager, q returns.
      Esc or Ctrl-C stops a reply, tools, a countdown; Esc at a question: no.
      Esc Esc clears the line. Up: history (in a reply: the last queued line).
      Ctrl-C twice on an empty prompt, or Ctrl-D, leaves.
Session: saved as you go; `midstream -c` picks it up again,
         `midstream --resume` picks one of this workspace's sessions."""


def _clear(session: Interactive, rest: str) -> None:
    agent = session.agent
    old = agent.transcript.id if agent.transcript else None
    session.shell_notes = []  # they belonged to the conversation being left
    agent.start_over([], Transcript.create(agent.config.workspace, agent.config.model))
    kept = f" (session {old} is kept: `midstream --resume {old}`)" if old else ""
    session.say(f"new conversation, session {agent.transcript.id if agent.transcript else '-'}{kept}")


def _model(session: Interactive, rest: str) -> None:
    if not rest:
        session.say(f"model: {session.agent.config.model} (change it with /model NAME)")
        return
    if any(ch.isspace() for ch in rest):
        session.say(f"not a model name: {rest!r}")
        return
    session.agent.config.model = rest
    session.agent.context.window = context_window_for(rest, session.agent.config.context_window)  # compaction too
    session.say(f"model: {rest} from the next message on")


def _cost(session: Interactive, rest: str) -> None:
    usage = session.agent.ledger.session
    if not (usage.prompt_tokens or usage.output):
        session.say("no tokens used yet in this session")
        return
    # Each request as billed, by the model the server said ran it: not the whole session re-priced at
    # the model now chosen (/model claude-opus-4 after a free local model).
    described = usage.describe() + (" · cost unknown for this model" if usage.dollars is None else "")
    if usage.hit_ratio is None or not (usage.cache_read or usage.cache_write or usage.cache_write_1h):
        first, _, cost = described.rpartition(" · ")
        described = f"{first} · no cache reads yet · {cost}"
    session.say(f"so far: {described} · {session.agent.context_used().describe()}")


def _mode(session: Interactive, rest: str) -> None:
    if rest not in MODES:
        session.say(f"mode: {session.agent.gate.mode} (use /mode {'|'.join(MODES)})")
        return
    session.agent.gate.mode = session.agent.config.mode = rest
    session.say(f"mode: {rest}")


def _undo(session: Interactive, rest: str) -> None:
    """Put back what the last turn changed (again: the turn before); the model hears of it next message."""
    with session.interruptible():
        report = session.agent.undo.undo()
    for line in report.lines():
        session.say(line, style="")


def _compact(session: Interactive, rest: str) -> None:
    """Summarise now; the renderer shows what was kept (or why nothing changed). Esc stops it, as Ctrl-C."""
    session.turn(lambda: session.agent.compact(rest or None))


def _retry(session: Interactive, rest: str) -> None:
    session.turn(session.agent.retry)


def _resume(session: Interactive, rest: str) -> None:
    session.resume(rest or None)


def _web(session: Interactive, rest: str) -> None:
    session.say(session.open_web() if session.open_web else "no browser view in this session", style="")


def _show(session: Interactive, rest: str) -> None:
    """The last fold (or the Nth last) whole: a command's output, a file read, thinking, a diff."""
    _open_fold(session, rest, None)


def _diff(session: Interactive, rest: str) -> None:
    """The last folded diff (or the Nth last) whole."""
    _open_fold(session, rest, "diff")


def _open_fold(session: Interactive, rest: str, kind: str | None) -> None:
    from midstream.tools.ui.folds import opened

    name = "diff" if kind else "show"
    if rest and not rest.isdigit() or rest.isdigit() and int(rest) < 1:
        session.say(f"/{name} takes a number: /{name} opens the last, /{name} 2 the one before it")
        return
    if session.folds is None:
        session.say("nothing is folded here: this terminal shows everything as it comes (/transcript has it all)")
        return
    found = session.folds.get(int(rest or 1), kind)
    if found is None:
        session.say(session.folds.missing(int(rest or 1), kind))
        return
    session.page(opened(found))


def _transcript(session: Interactive, rest: str) -> None:
    """The whole session, nothing folded."""
    from midstream.tools.cli.fullview import transcript_rows

    session.page(transcript_rows(session.agent, session.folds))


def _mcp(session: Interactive, rest: str) -> None:
    """MCP servers and their state; ``/mcp approve NAME`` starts a project server (tools/mcp/)."""
    from midstream.tools.mcp import McpServers

    servers = next((s for s in session.agent.tools.sources if isinstance(s, McpServers)), None)
    if servers is None:
        session.say("no MCP servers (--mcp-config FILE, a .mcp.json here, or [mcp_servers.NAME] in settings.toml)")
        return
    word, _, name = rest.partition(" ")
    if word == "approve" and name.strip():
        session.say(servers.approve(name.strip()))
    elif rest:
        session.say("use /mcp to list the servers, /mcp approve NAME to start a project server")
    else:
        session.say("\n".join(servers.describe()), style="")


def _exit(session: Interactive, rest: str) -> str:
    return LEAVE


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("help", "/help", "show this", _help),
    Command("clear", "/clear", "start a new conversation (the old one stays on disk)", _clear),
    Command("model", "/model [NAME]", "show or change the model", _model),
    Command("cost", "/cost", "tokens, cache hit ratio and cost so far", _cost),
    Command("mode", "/mode [MODE]", f"show or change the permission mode ({', '.join(MODES)})", _mode),
    Command("undo", "/undo", "take back the last turn's changes to the workspace", _undo),
    Command("compact", "/compact [HOW]", "summarise the conversation so far to free context", _compact),
    Command("retry", "/retry", "send the last message again after its attempts ran out", _retry),
    Command("resume", "/resume [ID]", "switch to another session of this workspace (no ID: pick from a list)",
            _resume),
    Command("web", "/web", "watch, answer and stop this session from a browser (prints the URL)", _web),
    Command("show", "/show [N]", "open the last fold whole (N: the Nth last); Ctrl-O on an empty line too",
            _show),
    Command("diff", "/diff [N]", "open the last folded diff whole (N: the Nth last diff)", _diff),
    Command("transcript", "/transcript", "the whole session with nothing folded, in a pager", _transcript),
    Command("mcp", "/mcp [approve NAME]", "MCP servers and their state; approve a project server", _mcp),
    Command("exit", "/exit", "leave (so do Ctrl-D and Ctrl-C twice)", _exit),
)}
COMMANDS["quit"] = COMMANDS["exit"]


def is_command(text: str) -> bool:
    """``/word`` (and its arguments) or ``!command``; ``/etc/hosts is …`` is a message, not a command."""
    stripped = text.strip()
    if stripped.startswith("!"):
        return len(stripped) > 1
    word = stripped.split(maxsplit=1)[0] if stripped else ""
    return word.startswith("/") and len(word) > 1 and "/" not in word[1:]


def dispatch(session: Interactive, text: str) -> str | None:
    """Run the command in ``text``; LEAVE ends the session."""
    stripped = text.strip()
    if stripped.startswith("!"):
        run_shell(session, stripped[1:].strip())
        return None
    word, _, rest = stripped.partition(" ")
    command = COMMANDS.get(word[1:].lower())
    if command is None:
        session.say(f"unknown command {word} (try /help)", style="")
        return None
    return command.run(session, rest.strip())


def run_shell(session: Interactive, command: str) -> None:
    """The person's own command, through the model's shell tool; Ctrl-C stops it."""
    tool = session.agent.tools.get("bash")
    if tool is None:
        session.say("no shell tool in this build")
        return
    config = session.agent.config
    ctx = ToolContext(config.workspace, decision=Decision(isolation=config.isolation, network=config.network))
    if session.agent.gate.mode == "read-only":  # the person's command too: the workspace stays as it is
        ctx.decision = session.agent.gate.decide(tool.plan(config.workspace, "bang", {"command": command}), ctx)
        if ctx.decision.refusal is not None:
            print(shown(ctx.decision.refusal), flush=True)
            return
    results: list[ToolResult] = []
    done = threading.Event()

    def work() -> None:
        try:
            results.append(tool.run(ctx, {"command": command}))
        finally:
            done.set()

    thread = threading.Thread(target=work, name="bang-command", daemon=True)

    def wait() -> None:
        # An Event, not Thread.join: a join interrupted by Ctrl-C may later return before the thread ends.
        with session.interruptible():
            thread.start()
            while not ctx.live.is_set() and not done.wait(0.01):
                pass  # said once the command runs: a Ctrl-C pressed on seeing it always finds it running
            session.say(f"running `{command}` (Esc or Ctrl-C stops it)", style="dim")
            while not done.wait(0.1):
                pass

    escape, session.keys.on_escape = session.keys.on_escape, ctx.cancelled.set  # Esc stops it as Ctrl-C does
    try:
        with session.interruptible():  # from the line above on, Ctrl-C stops the command
            session.turn(wait)  # keys read as during a turn: Esc caught, type-ahead kept, nothing echoed
    except KeyboardInterrupt:
        ctx.cancelled.set()  # the tool stops its process group and says what happened
        if thread.ident is not None:  # (a press before the command started: nothing to wait for)
            done.wait()
    finally:
        session.keys.on_escape = escape
    output = results[0].content if results else "[not run: stopped by the person before it started]"
    print(shown(output), flush=True)
    session.shell_notes.append(f"[The person ran a shell command themselves in the workspace:]\n$ {command}\n{output}")
