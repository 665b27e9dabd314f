"""Hooks in Claude Code's schema: shell commands the person (or, once approved, the project) runs at
points of the loop, with JSON on stdin and exit code 2 to block.

- ``config.py``  the ``[[hooks.EVENT]]`` tables of settings.toml, matchers, Claude Code's tool names
- ``runner.py``  one hook command run: stdin, environment, sandbox, timeout, stop, what it answered
- ``policy.py``  what an event's hooks decided together, and the ``Hooks`` object the loop calls
- ``loop.py``    the loop's side: what each point of a turn does with a verdict (notices, text, spans)
- ``approve.py`` which project hooks may run: approved once, by exact definition; skipped in -p
"""
