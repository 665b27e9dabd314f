"""The conversation: what the API accepts as history, session transcripts, prompt caching and usage.

- ``history.py``     the shape the API accepts, the commit guard's checks and repairs
- ``transcript.py``  one append-only JSONL file per session, read back whatever it holds
- ``clearing.py``    large tool results and inputs replaced by notes, and replayed on load
- ``compaction.py``  every request inside the window: budget, clearing, compaction, set aside
- ``summary.py``     the summary request's history and the record of what was summarised
- ``cache.py``       prompt-cache markers and the audit of cache misses
- ``tokens.py``      the token estimate (a token per four characters)
- ``usage.py``       token counts and their cost at list prices
- ``ledger.py``      the session's usage and cost, counted once for every renderer and /cost
"""
