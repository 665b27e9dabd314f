"""``midstream --demo``: the real agent, offline, against a scripted model on 127.0.0.1.

Nothing is faked past the model itself: the replies below stream from ``midstream.tools.testing.scripted_server``
over loopback HTTP and go through the same SSE parsing, assembler, scheduler, sandbox, tools and
renderer as a real session, in a scratch copy of a small repository that is left behind to look
at. In about 30 seconds it shows: streamed Markdown, two reads dispatched while the reply is still
streaming, an edit with its diff, a test run with live output in its status line, a dropped
connection rolled back and retried, and a destructive command in its grace window, stopped by a
real SIGINT, exactly what Ctrl-C sends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from midstream.sandbox.git import run_git
from midstream.tools.events import Event, ToolGrace
from midstream.tools.testing.cache_model import CacheModel
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

__all__ = ["DEMO_FILES", "DEMO_TASK", "demo_scenario", "make_demo_repository", "run_demo"]

DEMO_TASK = "The tests fail. Find the bug, fix it, run the tests, and clean up the build directory."

DEMO_FILES = {
    "README.md": "# calc\n\nA tiny calculator. Run the tests with `python3 -m unittest -v`.\n",
    "calc.py": '''"""A tiny calculator."""


def add(a, b):
    return a - b


def multiply(a, b):
    return a * b


def mean(values):
    return add(*values[:2]) / 2 if len(values) == 2 else sum(values) / len(values)
''',
    "test_calc.py": '''import time
import unittest

from calc import add, mean, multiply


class TestCalc(unittest.TestCase):
    def tearDown(self):
        time.sleep(0.4)  # slow enough to watch the status line

    def test_add(self):
        self.assertEqual(add(2, 3), 5)

    def test_add_negative(self):
        self.assertEqual(add(-2, -3), -5)

    def test_multiply(self):
        self.assertEqual(multiply(4, 5), 20)

    def test_mean_of_two(self):
        self.assertEqual(mean([2, 4]), 3)

    def test_mean_of_many(self):
        self.assertEqual(mean([1, 2, 3, 6]), 3)


if __name__ == "__main__":
    unittest.main()
''',
}

_INTRO = """## Looking at the code

I'll read the calculator and its tests **together**.
"""
_WHILE = """Each call started the moment I finished writing it, so both reads are done while this
sentence is still streaming to you.
"""

_FIX = """The bug is in `add`: it subtracts.

```python
def add(a, b):
    return a + b
```

Fixing it, then running the tests:
"""

_DONE = """All **5 tests pass** now. The `build/` directory only holds stale objects, so I'll remove it.
"""


def demo_scenario() -> list[dict[str, Any]]:
    """The replies of the scripted model, in the scripted server's format."""
    dropped = reply(Text(_DONE, chunk=3, delay=0.03))
    dropped["drop_after"] = 25  # the connection breaks mid-sentence; the reply is rolled back
    return [
        reply(Text(_INTRO, chunk=3, delay=0.03),
              ToolUse("toolu_read_calc", "read_file", {"path": "calc.py"}),
              ToolUse("toolu_read_tests", "read_file", {"path": "test_calc.py"}),
              Text(_WHILE, chunk=2, delay=0.035)),
        reply(Text(_FIX, chunk=3, delay=0.03),
              ToolUse("toolu_edit", "edit_file", {"path": "calc.py", "old_string": "return a - b",
                                                  "new_string": "return a + b"})),
        reply(ToolUse("toolu_test", "bash", {"command": "python3 -m unittest -v"})),
        dropped,
        reply(Text(_DONE, chunk=3, delay=0.03), ToolUse("toolu_clean", "bash", {"command": "rm -rf build/"})),
    ]


def make_demo_repository() -> Path:
    """A scratch copy of the demo repository (a git repository when git is installed)."""
    root = Path(tempfile.mkdtemp(prefix="midstream-demo-"))
    for name, text in DEMO_FILES.items():
        (root / name).write_text(text)
    if shutil.which("git"):
        for command in (["init", "-q"], ["add", "."],
                        ["-c", "user.name=midstream demo", "-c", "user.email=demo@localhost",
                         "commit", "-q", "-m", "calc: a tiny calculator with a bug"]):
            run_git(command, root)  # like every git call of midstream's: no hooks, signing or config programs
    (root / ".gitignore").write_text("build/\n__pycache__/\n")
    build = root / "build"
    for sub in ("obj", "lib"):
        (build / sub).mkdir(parents=True)
        for i in range(12):
            (build / sub / f"part{i}.o").write_bytes(b"\0" * 64)
    return root


class _PressesCtrlC:
    """Wraps the renderer: when the destructive call's countdown starts, press Ctrl-C for the person."""

    def __init__(self, renderer: Any, after: float, say: Any) -> None:
        self._renderer, self._after, self._say = renderer, after, say

    def show(self, event: Event) -> None:
        self._renderer.show(event)
        if isinstance(event, ToolGrace):
            threading.Timer(self._after, self._press).start()

    def _press(self) -> None:
        self._say("(demo) pressing Ctrl-C for you; in a session of your own, Ctrl-C in the countdown stops it")
        os.kill(os.getpid(), signal.SIGINT)

    def say(self, text: str, style: str = "") -> None:
        self._renderer.say(text, style)

    def suspended(self) -> contextlib.AbstractContextManager[None]:
        return self._renderer.suspended()

    def close(self) -> None:
        self._renderer.close()


def run_demo(make_agent: Any, renderer: Any, say: Any) -> tuple[int, Path]:
    """Run the scenario; ``make_agent(workspace, base_url, renderer)`` builds the agent as main() does."""
    workspace = make_demo_repository()
    say(f"midstream demo: a scripted model on 127.0.0.1 drives the real agent in {workspace}")
    server = ScriptedServer(demo_scenario(), cache=CacheModel())
    with server:
        agent = make_agent(workspace, server.url, _PressesCtrlC(renderer, 1.5, say))
        try:
            say(f"› {DEMO_TASK}")
            ended = agent.send(DEMO_TASK)
        finally:
            agent.close()
    fixed = "return a + b" in (workspace / "calc.py").read_text()
    say(f"demo finished: calc.py {'fixed' if fixed else 'NOT fixed'}, build/ "
        f"{'kept' if (workspace / 'build').exists() else 'removed'}. "
        f"Look around: cd {workspace} && git diff && python3 -m unittest")
    return (0 if fixed and ended.stop_reason == "interrupted" else 1), workspace
