"""The browser view: watch a session, answer its questions and stop it from any tab (``--web``, ``/web``).

- ``attach``     starts the view for a running agent: the hub joins its renderer, the server starts
- ``server``     the loopback HTTP server: the page, the SSE stream, answers and stop; who gets in
- ``hub``        numbers the events, keeps the replay log, fans records out to each tab's bounded queue
- ``view``       the page's state folded from the events (what a tab gets on connect)
- ``markdown``   finished lines of streamed text rendered with markdown-it-py, segment by segment
- ``broadcast``  the agent's renderer that the hub can join: the person's renderer, then listeners
- ``page.html``  the page: one static file, its own script and styles, no build step
"""
