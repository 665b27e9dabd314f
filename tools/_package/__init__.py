"""midstream: a coding agent whose tools start the moment their call is complete in the stream.

This directory is the installed package's root, ``midstream`` itself. It lives here, and holds only
this file, ``__main__.py`` and a link to the repository's ``agent.py``, so that the repository's top
level stays what the user chose (pyproject.toml, agent.py, tools/, prompts/, sandbox/, tests/) while
everything installs under one name. pyproject.toml maps the rest:

    agent.py        -> midstream.agent       the streaming loop, the story of one turn
    tools/          -> midstream.tools       the tools the model calls, their registry and scheduler
    tools/wire/     -> midstream.tools.wire  the model service: HTTP, SSE, assembly, record/replay
    tools/conversation/                      history rules, transcripts, prompt caching, usage
    tools/events.py                          the loop's event vocabulary (what every renderer receives)
    tools/ui/                                the terminal, plain and JSON renderers
    tools/web/                               the browser view: loopback server, SSE stream, page
    tools/testing/                           scripted model servers for --demo and the tests
    tools/cli/                               the command line, the demo, logs, the prompt
    sandbox/        -> midstream.sandbox     where tools may act: confinement, policy, isolation, undo
    prompts/        -> midstream.prompts     system prompt templates
"""
