"""Sandbox and search benchmarks: what confinement costs per command, and the search tools at scale.

    python tests/bench_sandbox.py            # 200 commands per way, a 40,000-file repository
    python tests/bench_sandbox.py --quick    # 50 commands, 10,000 files

Prints tables; never fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.* helpers

from midstream.sandbox import isolation  # noqa: E402
from midstream.sandbox.ignore import IgnoreRules  # noqa: E402
from midstream.sandbox.isolation import bwrap_works, probe  # noqa: E402
from midstream.tools import search  # noqa: E402
from midstream.tools.registry import Decision, ToolContext  # noqa: E402
from midstream.tools.shell import bash  # noqa: E402

from tests.bench_engine import median_ms, table  # noqa: E402


def bench_command_cost(workspace: Path, runs: int) -> None:
    subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)

    def tool(isolation: str, **extras: object) -> Callable[[], object]:
        def run() -> object:
            result = bash.run(ToolContext(workspace, decision=Decision(isolation=isolation, **extras)),
                              {"command": "true"})
            assert not result.is_error, result.content
            return result
        return run

    rows = []
    plain = median_ms(runs, tool("none"))
    rows.append(["bash tool, unconfined (--isolation none)", plain, 0.0])
    if bwrap_works():
        for label, extras in (("bash tool, bubblewrap, writable workspace + protected paths", {}),
                              ("bash tool, bubblewrap, read-only workspace", {"writable": False}),
                              ("bash tool, bubblewrap, with --network", {"network": True})):
            cost = median_ms(runs, tool("bwrap", **extras))
            rows.append([label, cost, cost - plain])
        raw_plain = median_ms(runs, lambda: subprocess.run(["bash", "-c", "true"], check=True))
        raw_bwrap = median_ms(runs, lambda: subprocess.run(
            [probe().bwrap, "--unshare-user", "--cap-drop", "ALL", "--unshare-pid", "--unshare-net", "--ro-bind",
             "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "bash", "-c", "true"], check=True))
        rows.append(["subprocess bash -c true (reference)", raw_plain, 0.0])
        rows.append(["subprocess bwrap … bash -c true (reference)", raw_bwrap, raw_bwrap - raw_plain])
    table(f"Sandbox cost per shell command (median of {runs} `true`, ms; target: added < 15 ms)",
          ["way", "median ms", "added ms"], rows)


def _generate(root: Path, files: int) -> None:
    (root / ".gitignore").write_text("build/\n*.log\n/generated/\n")
    per_dir = 100
    for index in range(files):
        directory = root / f"pkg{index // (per_dir * 20)}" / f"mod{index // per_dir}"
        if index % per_dir == 0:
            directory.mkdir(parents=True, exist_ok=True)
        suffix = (".py", ".txt", ".md", ".log")[index % 4]
        (directory / f"f{index}{suffix}").write_text(f"# file {index}\nvalue = {index}\n")
    for ignored in ("build", "generated"):
        for index in range(files // 20):
            directory = root / ignored / f"d{index // 100}"
            if index % 100 == 0:
                directory.mkdir(parents=True, exist_ok=True)
            (directory / f"g{index}.py").write_text("x = 1\n")


def _python_glob(root: Path, pattern: str) -> int:
    """The walk glob used before ripgrep did the walking: sandbox.ignore in Python, then pathspec."""
    import pathspec

    spec = pathspec.PathSpec.from_lines("gitignore", ["/" + pattern])
    return sum(1 for relative, is_dir in IgnoreRules(root).walk(root) if not is_dir and spec.match_file(relative))


def bench_search(workspace: Path, files: int, runs: int = 3) -> None:
    started = time.perf_counter()
    _generate(workspace, files)
    print(f"\n(generated {files:,} files plus {files // 10:,} ignored ones in {time.perf_counter() - started:.1f} s)")
    ctx = ToolContext(workspace)
    import re2

    def best(action: Callable[[], object]) -> float:
        return min(median_ms(1, action) for _ in range(runs)) / 1000

    glob_tool = best(lambda: search.glob.run(ctx, {"pattern": "**/*.py"}))
    grep_tool = best(lambda: search.grep.run(ctx, {"pattern": "no_such_identifier_anywhere"}))
    glob_python = best(lambda: _python_glob(workspace, "**/*.py"))
    grep_python = best(lambda: search._python_grep(workspace, re2.compile("no_such_identifier_anywhere"),
                                                    workspace, ""))
    table(f"Search tools on {files:,} files with a .gitignore (best of {runs}, seconds; target 0.2 s)",
          ["call", "ripgrep (now)", "Python walk (before)"],
          [['glob "**/*.py"', glob_tool, glob_python],
           ["grep, no match", grep_tool, grep_python]])

    def scan() -> object:
        return isolation.protected_paths(workspace)

    table(f"Finding nested repositories to protect, on every command ({files:,} files, seconds)",
          ["step", "seconds"], [["protected_paths()", best(scan)]])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        bench_command_cost(Path(scratch), 50 if args.quick else 200)
    with tempfile.TemporaryDirectory() as scratch:
        bench_search(Path(scratch), 10_000 if args.quick else 40_000)


if __name__ == "__main__":
    main()
