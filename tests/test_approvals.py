"""Project-defined code runs only once the person approved that exact definition: one store for
project hooks and project MCP servers (sandbox/approvals.py)."""

from __future__ import annotations

import threading
from pathlib import Path

from midstream.sandbox.approvals import ApprovalStore, fingerprint
from midstream.tools.mcp.approvals import Approvals


def test_an_approved_definition_counts_and_nothing_else_does(tmp_path: Path):
    store = ApprovalStore(tmp_path / "state" / "approvals.json")
    ws, other = tmp_path / "ws", tmp_path / "other"
    ws.mkdir(), other.mkdir()
    hook = {"event": "PreToolUse", "matcher": "Bash", "command": "./check.sh", "timeout": 30}
    assert not store.approved(fingerprint("hook", ws, hook))
    store.approve(fingerprint("hook", ws, hook), "./check.sh", ws)
    assert store.approved(fingerprint("hook", ws, hook))
    assert ApprovalStore(store.path).approved(fingerprint("hook", ws, dict(reversed(hook.items()))))  # key order
    assert not store.approved(fingerprint("hook", ws, {**hook, "command": "./check.sh "}))  # one byte more
    assert not store.approved(fingerprint("hook", other, hook))  # another checkout
    assert not store.approved(fingerprint("mcp", ws, hook))  # another kind
    assert store.path.stat().st_mode & 0o077 == 0 and store.path.parent.stat().st_mode & 0o077 == 0
    assert Approvals is ApprovalStore  # MCP's project servers are remembered in the same store


def test_a_corrupt_file_approves_nothing_and_can_be_approved_into_again(tmp_path: Path):
    store = ApprovalStore(tmp_path / "approvals.json")
    key = fingerprint("hook", tmp_path, {"command": "x"})
    for damaged in ('{"approved": ["not', '["a list"]', ""):
        store.path.write_text(damaged, encoding="utf-8")
        assert not store.approved(key)
    store.approve(key, "x", tmp_path)
    assert store.approved(key)


def test_two_sessions_approving_at_once_both_count(tmp_path: Path):
    path = tmp_path / "approvals.json"
    keys = [fingerprint("hook", tmp_path, {"command": f"hook-{n}"}) for n in range(20)]
    threads = [threading.Thread(target=ApprovalStore(path).approve, args=(key, "h", tmp_path)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(ApprovalStore(path).approved(key) for key in keys)
