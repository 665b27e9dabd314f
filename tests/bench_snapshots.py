"""Snapshot and classification benchmarks. Prints tables; never fails.

    python tests/bench_snapshots.py            # 5,000 and 50,000 files, median of 20
    python tests/bench_snapshots.py --quick    # 5,000 files only
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.* helpers
from midstream.sandbox.policy import classify, destructive_targets  # noqa: E402
from midstream.sandbox.snapshots import TurnSnapshots  # noqa: E402

from tests.bench_engine import median_ms, table  # noqa: E402
from tests.test_policy import DESTRUCTIVE_FORMS, EVERYDAY, POSITIONS, _place  # noqa: E402

RUNS = 20


def _git(workspace: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=workspace, check=True,
                   capture_output=True)


def make_repository(root: Path, files: int, *, git: bool) -> Path:
    """``files`` small source files in directories of 50, committed when ``git``."""
    workspace = root / f"ws-{files}-{'git' if git else 'plain'}"
    for number in range(files):
        directory = workspace / f"pkg{number // 50:04d}"
        if number % 50 == 0:
            directory.mkdir(parents=True)
        (directory / f"mod{number % 50:02d}.py").write_text(f"def f{number}():\n    return {number}\n" * 8)
    if git:
        _git(workspace, "init", "-q")
        _git(workspace, "add", "-A")
        _git(workspace, "commit", "-qm", "generated")
    return workspace


def bench_snapshots(sizes: list[int]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["XDG_STATE_HOME"] = str(Path(scratch) / "state")
        for size in sizes:
            for git in (True, False):
                workspace = make_repository(Path(scratch), size, git=git)
                snapshots = TurnSnapshots(workspace, "bench")
                started = time.perf_counter()
                snapshots.before_call()
                first = (time.perf_counter() - started) * 1000
                unchanged = median_ms(RUNS, snapshots.before_call)
                counter = iter(range(10**9))

                def edit_then_snapshot(workspace: Path = workspace, snapshots: TurnSnapshots = snapshots,
                                       counter=counter) -> None:
                    number = next(counter)
                    (workspace / "pkg0000" / "mod00.py").write_text(f"edited {number}\n")
                    (workspace / f"new{number}.txt").write_text("new\n")
                    snapshots.before_call()

                edited = median_ms(RUNS, edit_then_snapshot)
                status = median_ms(RUNS, lambda w=workspace: subprocess.run(["git", "status", "--porcelain"], cwd=w,
                                                                      capture_output=True)) if git else float("nan")
                rows.append([f"{size:,}", "git" if git else "not git", first, unchanged, edited, status])
    table(f"Snapshot cost per writing tool call (ms; median of {RUNS}; targets: 5,000 files < 50, 50,000 < 250)",
          ["files", "workspace", "first (seeds the index)", "nothing changed", "1 edit + 1 new file",
           "baseline: git status"], rows)


def _old_classifier():
    """The shlex classifier this replaced (git show 600f7c7:sandbox/policy.py), for a baseline."""
    source = subprocess.run(["git", "show", "600f7c7:sandbox/policy.py"], cwd=Path(__file__).parent.parent,
                            capture_output=True, text=True)
    if source.returncode != 0:
        return None
    spec = importlib.util.spec_from_loader("old_policy", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_policy"] = module
    exec(compile(source.stdout, "old_policy.py", "exec"), module.__dict__)
    return module.classify


def bench_classification() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch)
        (workspace / "existing.txt").write_text("x")
        (workspace / "a.txt").write_text("x")
        (workspace / "d").mkdir()
        (workspace / "sub").mkdir()
        commands = {
            "destructive forms x positions": [_place(p, f) for f in DESTRUCTIVE_FORMS for p in POSITIONS],
            "destructive forms, plain": list(DESTRUCTIVE_FORMS),
            "everyday commands": [c for c, _ in EVERYDAY],
        }
        old = _old_classifier()
        rows = []
        for name, table_commands in commands.items():
            def per_command(classifier, table_commands=table_commands) -> float:
                times = []
                for command in table_commands:
                    started = time.perf_counter()
                    classifier(command, workspace)
                    times.append((time.perf_counter() - started) * 1e6)
                return statistics.median(times)

            per_command(classify)  # warm: the grammar loads once
            new = statistics.median(per_command(classify) for _ in range(5))
            baseline = statistics.median(per_command(old) for _ in range(5)) if old else float("nan")
            missed = sum(1 for c in table_commands if classify(c, workspace).destructive) if "destructive" in name \
                else sum(1 for c in table_commands if not classify(c, workspace).destructive)
            old_hits = "n/a"
            if old:
                flagged = sum(1 for c in table_commands if old(c, workspace).destructive)
                right = flagged if "destructive" in name else len(table_commands) - flagged
                old_hits = f"{right}/{len(table_commands)}"
            rows.append([name, len(table_commands), new, baseline, f"{missed}/{len(table_commands)}", old_hits])
        table("Classification per command (µs, median; target < 1,000 µs); right verdicts, tree-sitter vs shlex",
              ["table", "commands", "tree-sitter µs", "old shlex µs", "right (new)", "right (old)"], rows)
        rows = []
        for command in ("rm -rf /", "rm -rf ~", "rm -rf d", "git clean -fdx"):
            rows.append([command, median_ms(5, lambda c=command: destructive_targets(c, workspace))])
        table("Time to the countdown: classify + targets (ms, median of 5; target < 100)", ["command", "ms"], rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    bench_classification()
    bench_snapshots([5_000] if args.quick else [5_000, 50_000])


if __name__ == "__main__":
    main()
