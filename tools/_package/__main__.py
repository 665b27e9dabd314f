"""``python -m midstream``, and the ``midstream`` script: the command line in tools/cli/main.py."""

import atexit
import contextlib
import gc
import os
import signal
import sys


def _interrupted(signum: int, frame: object) -> None:
    raise SystemExit(130)  # nothing has started yet: leave quietly, as an interrupted command does


def run() -> int:
    """Ctrl-C while the program loads (a second or so of imports) exits 130 without a traceback;
    the session installs its own handling once it has something to stop."""
    signal.signal(signal.SIGINT, _interrupted)
    gc.disable()  # start-up allocates much and frees little: collecting during the imports is wasted
    from midstream.tools.cli.main import main

    gc.enable()
    code = main()
    _leave(code)
    return code  # (not reached)


def _leave(code: int) -> None:
    """Exit without tearing the interpreter down. By now everything that matters is closed: the
    transcript fsynced at every commit, the tools stopped, the connection closed; what is left is
    the exit handlers (the log's writer drains its queue) and the standard streams. Finalising every
    module's objects would cost 20-50 ms that the person (or the script waiting on us) sits through.
    Under a profiler or a tracer (they write their results after us), the usual exit."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: what could be said is said
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(run())
