"""What the person sees: the renderers of the loop's events (tools/events.py).

- ``terminal``  the rich live region: streamed text, one status line per running tool
- ``render``    plain text and JSON lines, and the one-line summaries both share
- ``printer``   the append-only printer: what was printed stays printed
- ``lines``     Markdown styled one finished line at a time
"""
