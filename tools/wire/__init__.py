"""The model service: one streaming request, its SSE, the turn assembler, record/replay, retries.

- ``model``        the HTTP client and the Messages API dialect, its errors mapped once
- ``openai``       the Chat Completions dialect, translated into the same stream events
- ``providers``    which wire a session speaks
- ``sse``          server-sent events split from a byte stream
- ``shapes``       the shape check every stream event passes
- ``assembler``    stream events in; the partial message and renderer events out
- ``body``         the request body, serialised once per message
- ``recording``    --record and --replay
- ``retry``        wait or stop: backoff, retry-after and its cap, for every request
"""
