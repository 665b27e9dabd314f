"""Project-defined code runs only once the person approved that exact definition (sandbox/approvals.py)."""

from __future__ import annotations

import threading
from pathlib import Path

from midstream.sandbox.approvals import ApprovalStore


def test_an_approved_definition_counts_and_nothing_else_does(tmp_path: Path):
    store = ApprovalStore(tmp_path / "state" / "approvals.json")
    ws, other = tmp_path / "ws", tmp_path / "other"
    ws.mkdir(), other.mkdir()
    hook = {"event": "PreToolUse", "matcher": "Bash", "command": "./check.sh", "timeout": 30}
    assert not store.approved("hook", ws, hook)
    store.approve("hook", ws, hook, label="./check.sh")
    assert store.approved("hook", ws, hook)
    assert ApprovalStore(store.path).approved("hook", ws, dict(reversed(hook.items())))  # key order is no change
    assert not store.approved("hook", ws, {**hook, "command": "./check.sh "})  # one byte more
    assert not store.approved("hook", other, hook)  # another checkout
    assert not store.approved("mcp", ws, hook)  # another kind
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"


def test_a_corrupt_file_approves_nothing_and_can_be_approved_into_again(tmp_path: Path):
    store = ApprovalStore(tmp_path / "approvals.json")
    store.path.write_text('{"approved": ["not', encoding="utf-8")
    assert not store.approved("hook", tmp_path, {"command": "x"})
    store.path.write_text('{"approved": ["a list"]}', encoding="utf-8")
    assert not store.approved("hook", tmp_path, {"command": "x"})
    store.approve("hook", tmp_path, {"command": "x"})
    assert store.approved("hook", tmp_path, {"command": "x"})


def test_two_sessions_approving_at_once_both_count(tmp_path: Path):
    path = tmp_path / "approvals.json"
    definitions = [{"command": f"hook-{n}"} for n in range(20)]
    threads = [threading.Thread(target=ApprovalStore(path).approve, args=("hook", tmp_path, d)) for d in definitions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(ApprovalStore(path).approved("hook", tmp_path, d) for d in definitions)
