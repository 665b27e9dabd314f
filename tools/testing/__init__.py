"""Scripted model servers that speak the real wires on 127.0.0.1, for ``--demo`` and the tests.

- ``scripted_server``  the Messages API's SSE from scripted replies: timing, drops, errors, the recorded requests
- ``scripted_chat``    the same scenarios on the Chat Completions wire
- ``cache_model``      the Messages API's prompt-cache accounting, so scripted usage is realistic
- ``mcp_server``       an MCP server made with the SDK (stdio or HTTP): slow with progress, echo, big, fail, hang
"""
