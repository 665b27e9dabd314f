"""The ``midstream`` command: options and settings, then a session (interactive, ``-p`` or the demo).

Where things live: the option table in options.py, settings files in settings.py, the default
permission mode in modes.py, Ctrl-C / Esc / SIGTERM in interrupts.py, the interactive session in
repl.py (slash commands in slash.py, keys during a turn in typeahead.py), sessions on disk in
sessions.py. This module wires them: it builds the AgentConfig, chooses the renderer and runs the
session.

Known failures end as one line on stderr and a non-zero exit, never a traceback. Exit codes:
0 the model finished; 1 it did not (attempts exhausted, an API error, max requests, cut off);
3 the model refused; 130 interrupted; 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from midstream.agent import Agent, AgentConfig, model_client
from midstream.tools.cli import options, sessions
from midstream.tools.cli.interrupts import install_signals, interrupt_turn
from midstream.tools.cli.modes import choose_mode, sandbox_state
from midstream.tools.cli.settings import SettingError, Settings, apply_sandbox, resolve, show_warnings
from midstream.tools.conversation.transcript import SessionInUse, StateError, Transcript, state_dir, state_error
from midstream.tools.conversation.usage import Usage
from midstream.tools.events import Renderer, TurnEnded
from midstream.tools.hooks.policy import Hooks
from midstream.tools.registry import ToolRegistry
from midstream.tools.startup import LATER, Job
from midstream.tools.ui.sanitise import shown
from midstream.tools.ui.theme import typed_meanwhile
from midstream.tools.wire.client import ModelClient
from midstream.tools.wire.providers import PROVIDERS

if TYPE_CHECKING:
    from midstream.tools.cli.repl import Interactive
    from midstream.tools.ui.folds import Folds

if TYPE_CHECKING:
    from midstream.tools.mcp import McpServers

__all__ = ["config_from_environment", "main", "parse_args"]

EXIT_FOR = {"refusal": 3, "interrupted": 130}


def _version() -> str:
    """The installed distribution's version: one source of truth, pyproject.toml."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("midstream")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return options.parse(argv, _version())


def _fail(message: str) -> SystemExit:
    """Bad usage or settings: one line on stderr, exit status 2 (as argparse does)."""
    print(f"midstream: {shown(message)}", file=sys.stderr)
    return SystemExit(2)


def config_from_environment(args: argparse.Namespace, settings: Settings | None = None, *,
                            need_service: bool = True) -> AgentConfig:
    """Settings from flags, settings files and the provider's variables (ANTHROPIC_* or, with
    --provider openai, OPENAI_*); a missing key is an error only for the real API."""
    workspace = _workspace(args)
    s = settings or _settings(args, workspace)
    provider = PROVIDERS[s["provider"]]
    api_key = os.environ.get(provider.key_env, "").strip() or None  # a key read from a file keeps its newline
    if api_key is not None and not all("!" <= c <= "~" for c in api_key):  # never shown: it may be a real key
        raise _fail(f"{provider.key_env} has a space, a control character or a non-ASCII character inside it, "
                    "which no key has: set it again, copied exactly.")
    base_url = os.environ.get(provider.base_url_env, "").strip() or None
    if base_url is not None and not _is_http_url(base_url):
        raise _fail(f"{provider.base_url_env}={base_url!r} is not a URL the model service can be reached at: "
                    "give it as http://host:port/path or https://….")
    if need_service and api_key is None and (base_url or "").rstrip("/") in ("", provider.base_url):
        raise _fail(provider.missing_key)
    from_table = {o.config_field: s[o.dest] for o in options.OPTIONS if o.config_field and s[o.dest] is not None}
    window, reply = from_table.get("context_window"), from_table.get("max_tokens", AgentConfig.max_tokens)
    if window is not None and window < reply + 1024:
        raise _fail(f"--context-window {window} leaves no room for a conversation beside the reply's "
                    f"--max-tokens {reply}: raise the window or lower --max-tokens.")
    if s.sources["model"] == "default":  # no flag, setting or $..._MODEL: the provider's own default
        from_table["model"] = provider.model
    return AgentConfig(workspace=workspace, base_url=base_url or provider.base_url, api_key=api_key,
                       prompt_cache=not args.no_cache and provider.prompt_cache, **from_table)


def _is_http_url(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port out of range)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _workspace(args: argparse.Namespace) -> Path:
    workspace = args.cwd.resolve()
    if not workspace.is_dir():
        raise _fail(f"the workspace {workspace} is not a directory.")
    from midstream.sandbox.workspace import workspace_problem

    if problem := workspace_problem(workspace):
        raise _fail(problem)
    return workspace


def _settings(args: argparse.Namespace, workspace: Path) -> Settings:
    try:
        settings = resolve(args, workspace)
    except SettingError as error:
        raise _fail(str(error)) from None
    show_warnings(settings, workspace)
    apply_sandbox(settings)
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """The command; a state directory that fails under it (read-only, full, in the way) is one line."""
    try:
        return _session(argv)
    except StateError as error:
        print(f"midstream: {error}", file=sys.stderr, flush=True)
        return 1


def _session(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    if args.task is not None and args.prompt is not None:
        raise _fail("give the task once: either -p TASK or a first message, not both.")
    if args.task is not None and args.resume == "":
        raise _fail("--resume needs a session id with -p (`midstream --resume` alone lists them).")
    from midstream.sandbox import programs

    programs.pin_workspace(_workspace(args))  # before git or bwrap is looked up: never from inside the workspace
    settings = _settings(args, _workspace(args))
    if args.demo:
        return _demo(args, settings)
    if args.undo:
        return _undo_latest(args.cwd.resolve(), args.resume or None)
    from midstream.sandbox.isolation import INSTALL_HINT, probe

    headless = args.task is not None or not _stdin_is_terminal()
    if settings["isolation"] != "none":  # probed off the path to the first request (-p: once it is written)
        if headless:
            LATER.run("sandbox-probe", _probe_ahead)
        else:
            threading.Thread(target=_probe_ahead, name="sandbox-probe", daemon=True).start()
    config = config_from_environment(args, settings, need_service=args.replay is None)
    from midstream.sandbox.secrets import scrub_environ

    scrub_environ(["ANTHROPIC_API_KEY", "OPENAI_API_KEY"])  # the config holds the key; no process reads it from us
    if config.isolation == "bwrap" and not probe().available:
        raise _fail(f"--isolation bwrap, but {probe().reason} ({INSTALL_HINT}).")
    task = _task(args)
    if task is not None and not task.strip():
        raise _fail("the task is empty: give -p some text (or '-' and the text on stdin).")
    interactive = task is None and _stdin_is_terminal()
    why_mode = choose_mode(config, settings, args, headless=task is not None)
    if args.resume == "" and not interactive:
        return _list_sessions(config.workspace)
    _start_logging(config)
    transcript, history = _open_session(args, config)
    sessions.clean_up_after_crashes(config.workspace)  # a walk cut off by the exit is finished next time
    tools = _tools()
    folds = None
    if task is None:  # a person may open what the terminal folds (/show, /diff); -p never imports it
        from midstream.tools.ui.folds import Folds

        folds = Folds()
    renderer = _renderer(args, streaming=task is None, output_format=settings["output_format"],
                         session_id=transcript.id, folds=folds, theme=settings["theme"])
    mcp = _mcp_servers(args, config, settings, transcript, renderer, headless=task is not None)
    if mcp is not None:
        tools.add_source(mcp)  # its tools join between turns
    from midstream.tools.cli.repl import Interactive, confirmer
    from midstream.tools.cli.typeahead import TypeAhead
    from midstream.tools.questions import Questions
    from midstream.tools.web.attach import BrowserView
    from midstream.tools.web.broadcast import Broadcast

    agent_box: list[Agent] = []
    # Keys typed during a turn: Esc interrupts it as Ctrl-C does, the rest is kept for the prompt.
    keys = (TypeAhead.for_terminal(renderer, on_escape=lambda: interrupt_turn(agent_box[0]))
            or TypeAhead(-1))  # no terminal: nothing to read, nothing to capture
    broadcast = Broadcast(renderer)  # the browser view joins it, at start (--web) or later (/web)
    # A question goes to every surface; the first answer wins. With --web, the page can answer one in -p.
    # Esc at the terminal's question says no and stops the turn, as it stops a reply.
    terminal = confirmer(renderer, on_escape=lambda: interrupt_turn(agent_box[0])) if interactive else None
    questions = Questions(broadcast.show, terminal=terminal)
    broadcast.add(questions.observe)
    hooks = _hooks(settings, config, transcript, interactive=interactive)
    from midstream.tools.tracing import from_environment

    tracer = from_environment(version=_version())  # NOT_TRACING, importing nothing, unless OTEL_ asks
    agent = Agent(config, tools=tools, renderer=broadcast, history=history, transcript=transcript,
                  confirm=questions.ask if interactive or args.web else None, model=_model_client(args, config),
                  hooks=hooks, tracer=tracer)
    agent_box.append(agent)
    web = BrowserView(broadcast, lambda: agent.history, stop=lambda: _stop_from_web(agent), questions=questions,
                      port=args.web_port, session=lambda: _session_facts(agent, why_mode))
    agent.undo.warm()  # the first snapshot of a large workspace is slow: start it with the first message
    if settings["output_format"] == "stream-json":
        _print_init_line(agent, tools, why_mode)
    # stream-json tells it in order, after its init line (which probed already); text and json need not wait
    told = _tell_sandbox(renderer, config, later=headless and settings["output_format"] != "stream-json",
                         detail=not headless or settings["output_format"] != "text")
    if told is not None and settings["output_format"] == "json":  # its one result object says "sandbox"
        renderer.before_result = lambda: told.wait(5)  # type: ignore[attr-defined]  # a SummaryRenderer
    session = Interactive(agent, renderer, keys, folds=folds)
    session.open_web = web.open
    if typed := typed_meanwhile():  # keys typed while start-up asked the terminal its colours: not lost
        session.typed_ahead(typed)
    session.terminal = interactive and _draws(args)  # /resume's picker, the pager of /show and /transcript
    _greet(agent, session, why_mode, resumed=bool(history), headless=task is not None)
    if task is not None and args.replay is not None:  # no greeting for -p, but a replay's mode is news
        session.say(f"replaying {args.replay} · {why_mode}", style="dim")
    install_signals(agent, idle_raises=(lambda: True) if task is not None else session.waiting_for_person)
    if task is None:
        LATER.release()  # a person types the first message: start-up's deferred work runs meanwhile
    agent.hooks.session_start("resume" if history else "startup")
    try:
        if args.web:  # asked for at start: a port that cannot be had is a usage error, not a warning
            said = web.open()
            if web.server is None:
                raise _fail(said.removeprefix("midstream: "))
            session.say(said, style="")
        if task is not None:
            return _exit_code(agent.send(task))
        code = session.run(args.prompt)
        if agent.history and agent.transcript is not None:  # the way back, said on the way out
            session.say(f"resume this session: midstream -c (or --resume {agent.transcript.id})", style="dim")
        return code
    except KeyboardInterrupt:  # a second Ctrl-C during cleanup: the conversation is already saved
        return 130
    finally:
        web.close()
        agent.close("prompt_input_exit" if interactive else "other")
        if mcp is not None:
            mcp.close()
        tracer.shutdown()  # every span exported before we exit (-p too), within a bounded wait
        if told is not None and settings["output_format"] == "text":  # (json waited for it before its result)
            told.cancel()  # no request was ever written: nothing ran, and a warning after the error misleads;
            told.wait(5)  # else it is under way: never leave without saying a session ran unconfined
        _close(renderer, args, agent.ledger.session)


STDIN_MAX_BYTES = 8 * 1024 * 1024
STDIN_WAIT = 3.0  # seconds a pipe may stay silent before -p goes on without it


def _task(args: argparse.Namespace) -> str | None:
    """The headless task: -p's text with what was piped to stdin after it, as Claude Code does.

    Without -p and without a terminal on stdin there is no prompt to type at: the first message and
    the piped text are the task (run as -p would), or one line says what to do.
    """
    if args.task == "-":
        return _piped(wait=None)
    if args.task is not None:
        return "\n\n".join(part for part in (args.task, _piped(wait=STDIN_WAIT)) if part.strip())
    if _stdin_is_terminal() or (args.resume == "" and not args.prompt):  # the latter lists sessions
        return None
    task = "\n\n".join(part for part in (args.prompt or "", _piped(wait=STDIN_WAIT)) if part.strip())
    if not task:
        raise _fail("stdin is not a terminal, so there is no prompt to type at: give the task with -p TASK "
                    "(text piped in is appended to it), or run midstream in a terminal.")
    args.prompt = None
    return task


def _stdin_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):  # no stdin at all
        return False


def _piped(wait: float | None) -> str:
    """What a pipe or file on stdin holds (nothing for a terminal or /dev/null), decoded leniently."""
    import select
    import stat

    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError):
        return ""
    if os.isatty(fd) or not (stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)):
        return ""
    if wait is not None and not stat.S_ISREG(mode) and not select.select([fd], [], [], wait)[0]:
        print(f"midstream: nothing arrived on stdin in {wait:g} s; going on without it", file=sys.stderr)
        return ""
    data = sys.stdin.buffer.read(STDIN_MAX_BYTES + 1)
    if len(data) > STDIN_MAX_BYTES:
        raise _fail(f"stdin holds more than {STDIN_MAX_BYTES // 2**20} MB, more than a model reads at once: "
                    "save it to a file in the workspace and name the file in the task.")
    return data.decode("utf-8", errors="replace")


def _probe_ahead() -> None:
    """The sandbox probe, started early on its own thread: a failure there is logged, never a traceback on
    the person's terminal; the first real use asks again (sandbox/isolation.py caches only an answer)."""
    from midstream.sandbox.isolation import probe

    try:
        probe()
    except Exception:
        logging.getLogger("midstream.cli").exception("the sandbox probe failed; it is tried again when needed")


def _tell_sandbox(renderer: Renderer, config: AgentConfig, *, later: bool, detail: bool) -> Job | None:
    """How commands run, told once. With a task (-p), after the first request is written: probing bubblewrap
    and seccomp takes ~25 ms of start-up, and no command runs before the answer asks for one (which waits for
    the probe). For a person, at once: a warning is seen before the first message. ``detail``: whether the
    copy-on-write view is said too (another ~40 ms probe; text output shows only a warning, never that)."""
    from midstream.sandbox.isolation import startup_status
    from midstream.sandbox.transaction import transaction_status

    def tell() -> None:
        status = startup_status(config.isolation, config.network)
        renderer.show(transaction_status(status, config.workspace, config.isolation) if detail else status)

    if later and config.isolation != "none":  # --isolation none is known without a probe: told at once
        return LATER.run("sandbox-status", tell)
    tell()
    return None


def _greet(agent: Agent, session: Interactive, why_mode: str, *, resumed: bool, headless: bool) -> None:
    """Session id, mode and, for a person, the keys; a resumed session's notice and last exchange."""
    say = session.say
    transcript = agent.transcript
    if resumed and transcript is not None:
        say(sessions.resumed_notice(transcript, agent.history))
    if headless:
        return
    if transcript is not None and not resumed:
        say(f"session {transcript.id} · {agent.config.model} · {why_mode}", style="dim")
    elif resumed:
        say(f"{agent.config.model} · {why_mode}", style="dim")
    say("Enter sends · Alt-Enter or \\ Enter: a new line · Tab completes · @path attaches", style="dim")
    say("Esc or Ctrl-C stops a reply · Esc Esc clears the line · Ctrl-D leaves · /help", style="dim")


def _stop_from_web(agent: Agent) -> bool:
    """The page's stop button: Esc's effect, from the server's thread; False when no turn runs."""
    busy = agent.busy
    interrupt_turn(agent)
    return busy


def _session_facts(agent: Agent, why_mode: str) -> dict[str, object]:
    config = agent.config
    return {"session_id": agent.transcript.id if agent.transcript else None, "model": config.model,
            "mode": agent.gate.mode, "mode_reason": why_mode, "cwd": str(config.workspace)}


def _hooks(settings: Settings, config: AgentConfig, transcript: Transcript, *, interactive: bool) -> Hooks | None:
    """The settings files' hooks that may run: the person's, and the project's they approved."""
    tables = settings.tables.get("hooks", [])
    if not tables:
        return None
    from midstream.tools.hooks.approve import runnable_hooks
    from midstream.tools.hooks.config import HookConfigError, hooks_from_tables, launch_problem

    warnings: list[str] = []
    try:
        commands = hooks_from_tables(tables, warnings)
    except HookConfigError as error:
        raise _fail(str(error)) from None
    for warning in warnings:
        print(f"midstream: {warning}", file=sys.stderr, flush=True)

    def ask(question: str) -> bool:
        from midstream.tools.cli.repl import _ask

        return (_ask(f"{question} [y/N] ") or "").strip().lower() in ("y", "yes")

    commands = runnable_hooks(commands, config.workspace, ask=ask if interactive else None,
                              say=lambda line: print(f"midstream: {line}", file=sys.stderr, flush=True))
    for hook in commands:  # said now, not first at the call it was meant to guard
        if problem := launch_problem(hook, config.workspace):
            print(f"midstream: {hook.label()} ({hook.where}) cannot start: {problem} — a configuration error; "
                  "until it is fixed it fails every time", file=sys.stderr, flush=True)
    return Hooks(commands, config.workspace, isolation=config.isolation, mode=config.mode,
                 session_id=transcript.id, transcript_path=str(transcript.path))


def _print_init_line(agent: Agent, tools: ToolRegistry, why_mode: str) -> None:
    """stream-json's first line, as Claude Code's ``system``/``init``: what applies to this run."""
    from midstream.tools.ui.stream_json import init_line

    config = agent.config
    record = init_line(
        session_id=agent.transcript.id if agent.transcript else None, model=config.model,
        mode=config.mode, refuse_destructive=config.refuse_destructive, mode_reason=why_mode,
        sandbox=sandbox_state(config), cwd=str(config.workspace), tools=tools.names(),
    )
    print(json.dumps(record, ensure_ascii=False), flush=True)


def _exit_code(ended: TurnEnded) -> int:
    return 0 if ended.ok else EXIT_FOR.get(ended.stop_reason or "", 1)


def _undo_latest(workspace: Path, session_id: str | None) -> int:
    """``midstream --undo``: the latest session's last turn, undone; the model hears of it when resumed."""
    from midstream.sandbox.undo import undo_last_turn

    path = sessions.find(workspace, session_id)  # the session `-c` would pick up, not an empty newer one
    if path is None:
        raise _fail(f"found no session for {workspace} to undo.")
    try:
        held = Transcript(path)  # the session's lock: never undo a turn another process is still running
    except SessionInUse as error:
        raise _fail(f"--undo refused: {error}") from None
    try:
        report = undo_last_turn(workspace, path.stem)
    finally:
        held.close()
    print(shown("\n".join(report.lines())), file=sys.stderr, flush=True)  # file names are the workspace's
    return 0 if report.undone else 1


def _list_sessions(workspace: Path) -> int:
    found = sessions.list_sessions(workspace)
    if not found:
        print(f"no earlier sessions in {workspace}", file=sys.stderr)
        return 0
    print(shown(sessions.describe(found)))
    print("resume one with: midstream --resume ID", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from midstream.tools.cli.demo import run_demo

    renderer = _renderer(args, streaming=True, output_format=settings["output_format"])

    def make_agent(workspace: Path, base_url: str, demo_renderer: Renderer) -> Agent:
        if PROVIDERS[settings["provider"]].wire == "chat":  # the same scenario, as Chat Completions chunks
            base_url += "/v1"
        config = AgentConfig(workspace=workspace, base_url=base_url, backoff_base=1.0,
                             provider=settings["provider"], isolation=settings["isolation"], grace_seconds=3.0)
        agent = Agent(config, tools=_tools(), renderer=demo_renderer)
        install_signals(agent)
        return agent

    try:
        code, _ = run_demo(make_agent, renderer, renderer.say)
        return code
    finally:
        _close(renderer, args)


def _tools() -> ToolRegistry:
    from midstream.tools import default_registry

    return default_registry()


def _mcp_servers(args: argparse.Namespace, config: AgentConfig, settings: Settings, transcript: Transcript,
                 renderer: Renderer, *, headless: bool) -> McpServers | None:
    """MCP servers, connecting in the background from here on; only a `required` one delays the start."""
    if not args.mcp_config and not settings.tables.get("mcp_servers") and not (config.workspace / ".mcp.json").exists():
        return None  # the common case costs one stat
    from midstream.tools.mcp import ConfigError, open_servers

    def say(line: str) -> None:
        renderer.say(f"midstream: {line}", style="yellow")

    try:
        servers = open_servers(config.workspace, mcp_configs=args.mcp_config, tables=settings.tables.get(
            "mcp_servers", []), api_key=config.api_key, headless=headless, session_dir=transcript.path.with_suffix(""),
            state_dir=state_dir(), environ=dict(os.environ), say=say)
    except ConfigError as error:
        raise _fail(str(error)) from None
    if servers is None:
        return None
    servers.start()
    if held := servers.held_line():
        say(held)
    if servers.required:  # the person asked not to start without them
        try:
            servers.wait_for(servers.required)
        except KeyboardInterrupt:  # before the loop's Ctrl-C handling is installed
            servers.close()
            raise SystemExit(130) from None
        if why := servers.failed_required():
            servers.close()
            raise _fail(why)
    return servers


def _start_logging(config: AgentConfig) -> None:
    from midstream.tools.cli.logs import setup_logging

    level = getattr(logging, os.environ.get("MIDSTREAM_LOG_LEVEL", "INFO").upper(), logging.INFO)
    try:
        setup_logging(state_dir() / "logs", level=level, secrets=[config.api_key or ""])
    except OSError as error:
        raise state_error(error, state_dir() / "logs") from None


def _model_client(args: argparse.Namespace, config: AgentConfig) -> ModelClient | None:
    if args.record is None and args.replay is None:
        return None  # the Agent builds the usual one
    from midstream.tools.wire.recording import Recorder, ReplayTransport

    try:
        transport = ReplayTransport(args.replay) if args.replay else None
    except (FileNotFoundError, ValueError) as missing:  # no recording, or one that is not files of a sane size
        raise _fail(str(missing)) from None
    if transport is not None and (mismatch := transport.check_provider(config.provider)):
        raise _fail(mismatch)
    if transport is not None:
        config = dataclasses.replace(config, base_url="http://replay.invalid")
    return model_client(config, transport=transport, recorder=Recorder(args.record) if args.record else None)


def _open_session(args: argparse.Namespace, config: AgentConfig) -> tuple[Transcript, list[dict]]:
    if args.continue_latest or args.resume is not None:
        if args.resume == "":  # --resume without an id, at a terminal: the person picks one
            from midstream.tools.cli.repl import _ask

            try:
                path = sessions.choose(config.workspace, _ask, lambda text: print(shown(text), file=sys.stderr),
                                       terminal=_draws(args))
            except sessions.Cancelled:
                print("midstream: no session resumed (cancelled); nothing was changed", file=sys.stderr)
                raise SystemExit(130) from None
            if path is None:  # none to pick (said): a new one
                return Transcript.create(config.workspace, config.model), []
        else:
            path = sessions.find(config.workspace, args.resume or None)
        if path is None:
            wanted = f"session {args.resume}" if args.resume else "earlier session"
            raise _fail(f"found no {wanted} for {config.workspace} (`midstream --resume` lists them).")
        try:
            transcript, history, crashed = sessions.open_session(path)
        except SessionInUse as error:
            raise _fail(str(error)) from None
        except OSError as error:  # a session "file" that is a directory, or cannot be read
            raise _fail(f"cannot open session {path.stem} ({path}): {error.strerror or error}; "
                        "start a new session, or resume another (`midstream --resume` lists them).") from None
        if crashed:
            print(f"midstream: {shown(crashed)}", file=sys.stderr)
        return transcript, history
    return Transcript.create(config.workspace, config.model), []


def _renderer(args: argparse.Namespace, *, streaming: bool, output_format: str, session_id: str = "",
              folds: Folds | None = None, theme: str = "auto") -> Renderer:
    """json or stream-json for scripts; the live terminal on a TTY; plain lines otherwise."""
    if output_format == "stream-json":
        from midstream.tools.ui.stream_json import StreamJsonRenderer

        return StreamJsonRenderer(session_id=session_id)
    if output_format == "json":
        from midstream.tools.ui.render import SummaryRenderer

        return SummaryRenderer(session_id=session_id)
    if _draws(args, stdin=False):
        from midstream.tools.ui.lines import set_theme
        from midstream.tools.ui.terminal import TerminalRenderer
        from midstream.tools.ui.theme import background
        from rich.console import Console

        set_theme(background(theme, ask=streaming))
        return TerminalRenderer(Console(highlight=False), record=args.svg is not None, interactive=streaming,
                                folds=folds)
    from midstream.tools.ui.render import PlainRenderer

    return PlainRenderer(stream_text=streaming)


def _draws(args: argparse.Namespace, *, stdin: bool = True) -> bool:
    """May we draw on this terminal (a live region, the session picker), or is it plain lines?"""
    return ((not stdin or _stdin_is_terminal()) and sys.stdout.isatty() and not args.plain
            and os.environ.get("TERM") != "dumb")


def _close(renderer: Renderer, args: argparse.Namespace, session: Usage | None = None) -> None:
    if "midstream.tools.ui.terminal" not in sys.modules:  # not a terminal renderer (rich is slow to import)
        renderer.close()
        return
    from midstream.tools.ui.terminal import TerminalRenderer

    if isinstance(renderer, TerminalRenderer) and session is not None:
        renderer.session = session  # its line at exit: the ledger's whole session, a late /compact too
    renderer.close()
    if args.svg is not None and isinstance(renderer, TerminalRenderer):  # a picture of the terminal needs one
        renderer.save_svg(str(args.svg))
