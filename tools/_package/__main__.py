"""``python -m midstream``, and the ``midstream`` script: the command line in tools/cli/main.py."""

import signal
import sys


def _interrupted(signum: int, frame: object) -> None:
    raise SystemExit(130)  # nothing has started yet: leave quietly, as an interrupted command does


def run() -> int:
    """Ctrl-C while the program loads (a second or so of imports) exits 130 without a traceback;
    the session installs its own handling once it has something to stop."""
    signal.signal(signal.SIGINT, _interrupted)
    from midstream.tools.cli.main import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
