"""The conversation: what the API accepts as history, transcripts, the context window, caching, cost.

- ``history``      what the Messages API accepts; the commit guard every message passes
- ``transcript``   session transcripts: append-only JSONL, fsynced at every commit
- ``tokens``       the token estimate the context window is sized with
- ``clearing``     clearing old tool results (one batch), and replaying that on load
- ``compaction``   the context keeper: clear, then summarise, before the window is outgrown
- ``cache``        prompt cache breakpoints, and the audit of what each reply read
- ``usage``        token counts and their cost at list prices
- ``ledger``       the session's usage and cost, counted once for every renderer and /cost
"""
