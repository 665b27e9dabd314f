"""The tools the model can call, and what one call goes through; other parts in sub-packages.

- ``files.py``       read_file, write_file, edit_file: confined, link-safe, results with diffs
- ``search.py``      list_dir, glob, grep (ripgrep, or RE2 in Python)
- ``shell.py``       bash: one command in the sandbox, output streamed and capped
- ``todo.py``        todo: the model's plan, drawn as a checklist that updates in place
- ``registry.py``    what a tool is: wording, judgement, results with facts, the call's record
- ``schema.py``      input schemas from signatures, and the check of a call's input
- ``calls.py``       one call from dispatch to result: judged once, gated, scheduled, run, rolled back
- ``config.py``      AgentConfig, everything that shapes a session, and the one place a model client is built
- ``scheduler.py``   runs calls in parallel where they do not conflict, in order where they do
- ``events.py``      the loop's vocabulary: the events it reports, the Renderer protocol
- ``hooks/``         Claude Code's hooks: settings tables, the runner, what each event's answers mean
- ``tracing.py``     OpenTelemetry GenAI spans mirroring the loop, off unless OTEL_TRACES_EXPORTER asks
- ``tracing_otel.py`` the SDK and OTLP/HTTP exporter behind them, imported only when traces are on
- ``wire/``          the model service: HTTP, SSE, the turn assembler, record/replay, retries
- ``conversation/``  what the API accepts as history, transcripts, prompt caching, usage and cost
- ``ui/``            the terminal, plain-text and JSON renderers
- ``questions.py``   questions to the person that any surface answers, the first answer winning
- ``web/``           the browser view (``--web``): a loopback server, one SSE stream, the page
- ``mcp/``           MCP servers' tools as tools: config, the event-loop thread, progress, cancellation
- ``testing/``       scripted model servers on loopback, for ``--demo`` and the tests
- ``cli/``           the command line, the demo, the log file, the interactive prompt
- ``_package/``      the installed package's root (``midstream``): see its docstring

The repository's top level holds only agent.py, tools/, sandbox/, prompts/ and tests/, by the
user's choice; everything installs under the one name ``midstream`` (see pyproject.toml).
"""

from __future__ import annotations

from midstream.tools.registry import Tool, ToolRegistry

__all__ = ["builtin_tools", "default_registry"]


def builtin_tools() -> list[Tool]:
    from midstream.tools.files import edit_file, read_file, write_file
    from midstream.tools.search import glob, grep, list_dir
    from midstream.tools.shell import bash
    from midstream.tools.todo import todo

    return [read_file, write_file, edit_file, list_dir, glob, grep, bash, todo]


def default_registry() -> ToolRegistry:
    return ToolRegistry(builtin_tools())
