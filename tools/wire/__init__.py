"""The model service: one HTTP client speaking a dialect, SSE, the turn assembler and record/replay.

- ``client.py``     the one HTTP client (connections, time limits, the watchdog) and the Dialect seam
- ``errors.py``     our error hierarchy, and the one "context full" recogniser
- ``providers.py``  the provider table: wire, defaults, variables, key header, prompt caching
- ``anthropic.py``  the Messages API dialect
- ``openai.py``     the Chat Completions dialect: requests translated, chunks into Messages events
- ``sse.py``        the byte-level SSE splitter
- ``shapes.py``     the shape check every Messages event passes before the assembler
- ``chat_shapes.py`` the shape check every Chat Completions chunk passes before its translator
- ``assembler.py``  stream events into the partial assistant message and renderer events
- ``body.py``       the request body, serialised incrementally
- ``recording.py``  --record and --replay
- ``retry.py``      wait or stop: backoff, retry-after and its cap, for every request
"""
