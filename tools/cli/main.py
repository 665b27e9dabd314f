"""The ``midstream`` command line: settings from flags and ANTHROPIC_* variables, then a session.

Known failures end as one line on stderr and a non-zero exit, never a traceback. Exit codes:
0 the model finished; 1 it did not (attempts exhausted, an API error, max requests, cut off);
3 the model refused; 130 interrupted; 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from midstream.agent import DEFAULT_MODEL, Agent, AgentConfig
from midstream.sandbox.permissions import MODES
from midstream.tools.conversation.transcript import Transcript, state_dir
from midstream.tools.registry import ToolRegistry
from midstream.tools.ui.events import Renderer, TurnEnded
from midstream.tools.wire.model import ModelClient
from midstream.tools.wire.providers import DEFAULT_BASE_URLS, PROVIDERS, client_for

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
    parser = argparse.ArgumentParser(
        prog="midstream", description="A coding agent whose tools start the moment their call is complete."
    )
    parser.add_argument("--version", action="version", version=f"midstream {_version()}")
    parser.add_argument("-p", "--print", dest="task", metavar="TASK",
                        help="run one task without the prompt and exit ('-' reads the task from stdin)")
    parser.add_argument("--demo", action="store_true", help="run the offline demo (no key, no network)")
    parser.add_argument("--model", help=f"model name (default: $ANTHROPIC_MODEL or {DEFAULT_MODEL}; "
                        "with --provider openai, $OPENAI_MODEL or gpt-4.1)")
    parser.add_argument("--provider", choices=PROVIDERS, default=AgentConfig.provider,
                        help="anthropic: the Messages API (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL); openai: Chat "
                        "Completions, for OpenAI, Ollama, llama.cpp, vLLM (OPENAI_API_KEY, OPENAI_BASE_URL)")
    parser.add_argument("--cwd", type=Path, default=Path.cwd(), help="the workspace (default: here)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("-c", "--continue", dest="continue_latest", action="store_true",
                        help="resume the latest session of this workspace")
    resume.add_argument("--resume", metavar="ID", help="resume the session with this id")
    parser.add_argument("--mode", choices=MODES, default=AgentConfig.mode, help="permission mode (default: auto)")
    parser.add_argument("--grace", type=float, default=AgentConfig.grace_seconds, metavar="SECONDS",
                        help="countdown before a destructive command runs in auto mode (0: none)")
    parser.add_argument("--isolation", choices=("auto", "bwrap", "none"), default=AgentConfig.isolation,
                        help="run shell commands under bubblewrap (auto: when it works here)")
    parser.add_argument("--output-format", choices=("text", "json", "stream-json"), default="text",
                        help="text; json: one object with the result at the end; stream-json: one per event")
    parser.add_argument("--plain", action="store_true", help="no live region or colours, even on a terminal")
    parser.add_argument("--record", type=Path, metavar="DIR", help="save each request and raw reply in DIR")
    parser.add_argument("--replay", type=Path, metavar="DIR", help="answer from a --record recording instead")
    parser.add_argument("--svg", type=Path, metavar="FILE", help="save what the terminal showed as an SVG picture")
    parser.add_argument("--cache-ttl", choices=("5m", "1h"), default=AgentConfig.cache_ttl,
                        help="prompt cache lifetime (1h costs 2x input per write instead of 1.25x)")
    parser.add_argument("--no-cache", action="store_true", help="send no cache_control breakpoints")
    parser.add_argument("--max-tokens", type=int, default=AgentConfig.max_tokens, metavar="N",
                        help=f"output budget of one model request (default {AgentConfig.max_tokens})")
    parser.add_argument("--max-requests", type=int, default=AgentConfig.max_requests, metavar="N")
    parser.add_argument("--max-attempts", type=int, default=AgentConfig.max_attempts, metavar="N")
    parser.add_argument("--idle-timeout", type=float, default=AgentConfig.idle_timeout, metavar="SECONDS")
    parser.add_argument("--workers", type=int, default=AgentConfig.workers, metavar="N")
    return parser.parse_args(argv)


def _fail(message: str) -> SystemExit:
    """Bad usage or settings: one line on stderr, exit status 2 (as argparse does)."""
    print(f"midstream: {message}", file=sys.stderr)
    return SystemExit(2)


def config_from_environment(args: argparse.Namespace, *, need_service: bool = True) -> AgentConfig:
    """Settings from flags and the provider's variables; a missing key is an error only for the real API."""
    prefix = "OPENAI" if args.provider == "openai" else "ANTHROPIC"
    api_key = os.environ.get(f"{prefix}_API_KEY") or None
    base_url = os.environ.get(f"{prefix}_BASE_URL") or None
    model = args.model or os.environ.get(f"{prefix}_MODEL") or ("gpt-4.1" if prefix == "OPENAI" else DEFAULT_MODEL)
    if need_service and api_key is None and (base_url or "").rstrip("/") in ("", DEFAULT_BASE_URLS[args.provider]):
        raise _fail("set OPENAI_API_KEY to use the OpenAI API, or OPENAI_BASE_URL for a local server (Ollama: "
                    "http://localhost:11434/v1)." if prefix == "OPENAI" else
                    "set ANTHROPIC_API_KEY to use the Anthropic API, or ANTHROPIC_BASE_URL for another "
                    "Anthropic-compatible server (or try `midstream --demo`).")
    workspace = args.cwd.resolve()
    if not workspace.is_dir():
        raise _fail(f"the workspace {workspace} is not a directory.")
    return AgentConfig(
        workspace=workspace, model=model, base_url=base_url or DEFAULT_BASE_URLS[args.provider], api_key=api_key,
        provider=args.provider,
        max_tokens=args.max_tokens, max_requests=args.max_requests, max_attempts=args.max_attempts,
        idle_timeout=args.idle_timeout,
        workers=args.workers, mode=args.mode, grace_seconds=args.grace, isolation=args.isolation,
        prompt_cache=not args.no_cache and args.provider == "anthropic", cache_ttl=args.cache_ttl,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.demo:
        return _demo(args)
    config = config_from_environment(args, need_service=args.replay is None)
    if config.isolation == "bwrap":
        from midstream.sandbox.isolation import bwrap_works

        if not bwrap_works():
            raise _fail("--isolation bwrap, but bubblewrap is not installed or cannot run here.")
    task = sys.stdin.read() if args.task == "-" else args.task
    _start_logging(config)
    transcript, history = _open_session(args, config)
    tools = _tools()
    renderer = _renderer(args, config, tools, streaming=task is None)
    interactive = task is None and sys.stdin.isatty()
    agent = Agent(config, tools=tools, renderer=renderer, history=history, transcript=transcript,
                  confirm=_confirmer(renderer) if interactive else None, model=_model_client(args, config))
    return _run_session(agent, renderer, task, args)


def _run_session(agent: Agent, renderer: Renderer, task: str | None, args: argparse.Namespace) -> int:
    _install_signals(agent)
    try:
        if task is not None:
            return _exit_code(agent.send(task))
        return _prompt_loop(agent)
    except KeyboardInterrupt:  # a second Ctrl-C during cleanup: the conversation is already saved
        return 130
    finally:
        agent.close()
        _close(renderer, args)


def _exit_code(ended: TurnEnded) -> int:
    return 0 if ended.ok else EXIT_FOR.get(ended.stop_reason or "", 1)


def _demo(args: argparse.Namespace) -> int:
    from midstream.tools.cli.demo import run_demo

    renderer = _renderer(args, AgentConfig(model=DEFAULT_MODEL), _tools(), streaming=True)

    def make_agent(workspace: Path, base_url: str, demo_renderer: Renderer) -> Agent:
        if args.provider == "openai":  # the same scenario, as Chat Completions chunks
            base_url += "/v1"
        config = AgentConfig(workspace=workspace, base_url=base_url, model=DEFAULT_MODEL, backoff_base=1.0,
                             provider=args.provider,
                             isolation=args.isolation, grace_seconds=3.0)
        agent = Agent(config, tools=_tools(), renderer=demo_renderer)
        _install_signals(agent)
        return agent

    def say(line: str) -> None:
        if terminal_say := getattr(renderer, "say", None):
            terminal_say(line)
        else:
            print(line, file=sys.stderr, flush=True)

    try:
        code, _ = run_demo(make_agent, renderer, say)
        return code
    finally:
        _close(renderer, args)


def _tools() -> ToolRegistry:
    from midstream.tools import default_registry

    return default_registry()


def _start_logging(config: AgentConfig) -> None:
    from midstream.tools.cli.logs import setup_logging

    level = getattr(logging, os.environ.get("MIDSTREAM_LOG_LEVEL", "INFO").upper(), logging.INFO)
    setup_logging(state_dir() / "logs", level=level, secrets=[config.api_key or ""])


def _model_client(args: argparse.Namespace, config: AgentConfig) -> ModelClient | None:
    if args.record is None and args.replay is None:
        return None  # the Agent builds the usual one
    from midstream.tools.wire.recording import Recorder, ReplayTransport

    transport = ReplayTransport(args.replay) if args.replay else None
    return client_for(
        config.provider, base_url="http://replay.invalid" if transport else config.base_url, api_key=config.api_key,
        connect_timeout=config.connect_timeout, idle_timeout=config.idle_timeout, transport=transport,
        recorder=Recorder(args.record) if args.record else None,
    )


def _open_session(args: argparse.Namespace, config: AgentConfig) -> tuple[Transcript, list[dict]]:
    if args.continue_latest or args.resume:
        path = Transcript.find(config.workspace, args.resume)
        if path is None:
            wanted = f"session {args.resume}" if args.resume else "an earlier session"
            raise _fail(f"found no {wanted} for {config.workspace}.")
        return Transcript(path), Transcript.load(path)
    return Transcript.create(config.workspace, config.model), []


def _install_signals(agent: Agent) -> None:
    """SIGTERM and SIGHUP (the terminal closed) unwind like an exit, so the agent's close() stops
    its tools; Ctrl-C goes to the loop (see _install_interrupts)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    _install_interrupts(agent)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _install_interrupts(agent: Agent) -> None:
    """Route Ctrl-C to the loop at known points only (see agent.py, step 5).

    At the prompt it raises as usual. During a turn the first press sets ``interrupting`` and
    raises only if the loop is blocked reading the stream; the second kills the running tools.
    The kernel may deliver SIGINT to any thread, and Python runs the handler on the main thread
    only once it gets back to bytecode, so a watcher woken through the signal wakeup fd shuts the
    stream's socket down to wake a main thread blocked in recv().
    """

    def on_sigint(signum: int, frame: object) -> None:
        if not agent.busy:
            raise KeyboardInterrupt
        if agent.interrupting:
            agent.hurry()
            return
        agent.interrupting = True
        if agent.interruptible:
            raise KeyboardInterrupt

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, on_sigint)

    def watch() -> None:
        while data := os.read(read_end, 64):
            if signal.SIGINT in data and agent.busy:
                agent.abort_stream()

    threading.Thread(target=watch, name="interrupt-watcher", daemon=True).start()


def _renderer(args: argparse.Namespace, config: AgentConfig, tools: ToolRegistry, *, streaming: bool) -> Renderer:
    """json or stream-json for scripts; the live terminal on a TTY; plain lines otherwise."""
    if args.output_format == "stream-json":
        from midstream.tools.ui.render import JsonRenderer

        return JsonRenderer()
    if args.output_format == "json":
        from midstream.tools.ui.render import SummaryRenderer

        return SummaryRenderer(model=config.model)
    if sys.stdout.isatty() and not args.plain and os.environ.get("TERM") != "dumb":
        from midstream.tools.ui.terminal import TerminalRenderer
        from rich.console import Console

        def status_for(name: str, call_args: dict) -> str:
            tool = tools.get(name)
            return tool.status(call_args) if tool else name

        return TerminalRenderer(Console(highlight=False), model=config.model, status_for=status_for,
                                record=args.svg is not None)
    from midstream.tools.ui.render import PlainRenderer

    return PlainRenderer(model=config.model, stream_text=streaming)


def _close(renderer: Renderer, args: argparse.Namespace) -> None:
    if close := getattr(renderer, "close", None):
        close()
    if args.svg is not None and (save_svg := getattr(renderer, "save_svg", None)):
        save_svg(str(args.svg))


def _confirmer(renderer: Renderer) -> Callable[[str, threading.Event], str]:
    """Ask on the terminal from a worker thread; give up ("no") as soon as Ctrl-C sets ``cancelled``."""
    suspended = getattr(renderer, "suspended", contextlib.nullcontext)

    def confirm(question: str, cancelled: threading.Event) -> str:
        with suspended():
            sys.stderr.write(f"{question} [y]es / [n]o / [a]lways this session: ")
            sys.stderr.flush()
            while not cancelled.is_set():
                ready, _, _ = select.select([sys.stdin], [], [], 0.1)
                if ready:
                    answer = sys.stdin.readline().strip().lower()
                    return {"y": "yes", "yes": "yes", "a": "always", "always": "always"}.get(answer, "no")
            sys.stderr.write("\n")
            return "no"

    return confirm


HELP = """Commands: /retry sends the last message again after its attempts ran out; /help shows this.
Keys: Ctrl-C stops what is running (a stream, tools, a destructive command's countdown); twice leaves.
      Ctrl-C or Ctrl-D on an empty prompt, or an empty line, leaves. End a line with \\ to go on.
Session: saved as you go; `midstream --continue` picks it up again."""


def _prompt_loop(agent: Agent) -> int:
    from midstream.tools.cli.prompt import Prompt

    prompt = Prompt(agent.config.workspace)
    while True:
        text = prompt.read()
        if text is None:
            return 0
        command = text.strip()
        if command == "/retry":
            agent.retry()
        elif command == "/help":
            print(HELP, file=sys.stderr, flush=True)
        elif command.startswith("/") and " " not in command and "/" not in command[1:]:
            print(f"midstream: unknown command {command} (try /help)", file=sys.stderr, flush=True)
        else:
            agent.send(text)
