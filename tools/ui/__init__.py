"""What the person sees: the renderers of the loop's events (tools/events.py).

- ``terminal``  the rich live region: streamed text, one status line per running tool
- ``render``    plain text and JSON lines, and the one-line summaries both share
- ``printer``   the append-only printer: what was printed stays printed
- ``lines``     Markdown styled one finished line at a time
- ``outcomes``  finished calls as lines, grouped, with what they returned folded under them
- ``folds``     what the terminal folds, kept (bounded) to be opened whole: /show, /diff, Ctrl-O
- ``diffs``     diffs with both sides and line numbers, folded to a budget
- ``pager``     opening something whole: $PAGER or less -R on a terminal, printed otherwise
"""
