"""The bash tool with real processes: output, caps, timeouts, process groups, secrets, isolation."""

from __future__ import annotations

import socket
import threading
import tracemalloc
import uuid
from pathlib import Path

import pytest
from midstream.sandbox.isolation import bwrap_works
from midstream.tools.registry import Decision, ToolContext
from midstream.tools.shell import bash

from tests.helpers import processes_with, wait_until


def run(workspace, command, isolation="none", **args):
    lines: list[str] = []
    ctx = ToolContext(workspace, report_progress=lines.append, decision=Decision(isolation=isolation))
    return bash.run(ctx, {"command": command, **args}), lines, ctx


def test_output_is_merged_with_its_exit_status(workspace):
    result, _, _ = run(workspace, "echo out; echo err >&2; pwd")
    assert not result.is_error
    assert result.content == f"out\nerr\n{workspace}\n[exit status 0]"


def test_a_failing_command_is_an_error_result_with_its_status(workspace):
    result, _, _ = run(workspace, "echo partial; exit 3")
    assert result.is_error and result.content == "partial\n[exit status 3]"


def test_lines_are_reported_while_the_command_runs(workspace):
    result, lines, _ = run(workspace, "for i in 1 2 3; do echo step $i; sleep 0.05; done")
    assert lines[-1] == "step 3" and "step 1" in lines


def test_model_service_keys_do_not_reach_the_child(workspace, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "tok-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("HARMLESS_SETTING", "not-listed")
    monkeypatch.setenv("LC_TIME", "C.UTF-8")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    result, _, _ = run(workspace, "env")
    assert "secret" not in result.content and "sk-openai" not in result.content
    assert "not-listed" not in result.content  # an allowlist: what is not named stays out
    assert "LC_TIME=C.UTF-8" in result.content and "PATH=" in result.content


@pytest.mark.parametrize("command", [
    "head -c 50000000 /dev/zero | tr '\\0' x",  # 50 MB on one line
    "yes 'a line of output' | head -c 50000000",  # 50 MB in 2.8 million lines
])
def test_50_mb_of_output_is_capped_in_bounded_memory(workspace, command):
    tracemalloc.start()
    try:
        result, _, _ = run(workspace, command, timeout=120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "bytes of output left out" in result.content
    assert len(result.content) < 40_000
    assert peak < 8 * 1024 * 1024, f"peak Python memory {peak:,} bytes"


def test_timeout_kills_the_whole_process_group(workspace):
    marker = f"midstream-test-{uuid.uuid4().hex}"
    command = f"python3 -c 'import time; time.sleep(300)' {marker} & python3 -c 'import time; time.sleep(300)' {marker}"
    result, _, _ = run(workspace, command, timeout=1)
    assert result.is_error and "timed out after 1 s" in result.content
    assert wait_until(lambda: not processes_with(marker), 5), processes_with(marker)


def test_background_processes_do_not_outlive_the_command(workspace):
    marker = f"midstream-test-{uuid.uuid4().hex}"
    result, _, _ = run(workspace, f"(python3 -c 'import time; time.sleep(300)' {marker} &) ; echo started")
    assert "started" in result.content and "background processes" in result.content
    assert wait_until(lambda: not processes_with(marker), 5), processes_with(marker)


def test_cancellation_stops_a_running_command(workspace):
    marker = f"midstream-test-{uuid.uuid4().hex}"
    lines: list[str] = []
    ctx = ToolContext(workspace, report_progress=lines.append, decision=Decision(isolation="none"))
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("r", bash.run(
        ctx, {"command": f"echo begun; python3 -c 'import time; time.sleep(300)' {marker}"})))
    worker.start()
    assert wait_until(lambda: bool(processes_with(marker)))
    ctx.cancelled.set()
    worker.join(10)
    assert "Interrupted by the person after" in outcome["r"].content and "begun" in outcome["r"].content
    assert wait_until(lambda: not processes_with(marker), 5)


def test_timeout_bounds_are_checked(workspace):
    result, _, _ = run(workspace, "true", timeout=100000)
    assert result.is_error and "between 1 and 600" in result.content


needs_bwrap = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here (.ci/run installs it)")


@needs_bwrap
@pytest.mark.process
def test_under_bubblewrap_writes_outside_the_workspace_fail(workspace, tmp_path):
    system = Path("/usr/local") / f"midstream-probe-{uuid.uuid4().hex}"
    result, _, _ = run(workspace, f"echo inside > in.txt; echo x > {system}", isolation="bwrap")
    assert result.is_error and "Read-only file system" in result.content
    assert (workspace / "in.txt").read_text() == "inside\n"
    assert not system.exists()
    # /var/tmp, like /tmp, is the sandbox's own: a write there never reaches the host.
    outside = Path("/var/tmp") / f"midstream-probe-{uuid.uuid4().hex}"
    run(workspace, f"echo x > {outside}", isolation="bwrap")
    assert not outside.exists()
    # A sibling of the workspace under /tmp lands in the sandbox's private /tmp, never on the real disk.
    sibling = tmp_path / "sibling.txt"
    run(workspace, f"echo x > {sibling}", isolation="bwrap")
    assert not sibling.exists()
    result, _, _ = run(workspace, "echo private > /tmp/midstream-probe && cat /tmp/midstream-probe", isolation="bwrap")
    assert "private" in result.content and not Path("/tmp/midstream-probe").exists()


@needs_bwrap
@pytest.mark.process
def test_under_bubblewrap_there_is_no_network(workspace):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('connected')"
    probe = f'python3 -c "{connect}"'
    try:
        plain, _, _ = run(workspace, probe, isolation="none")
        isolated, _, _ = run(workspace, probe, isolation="bwrap")
    finally:
        listener.close()
    assert "connected" in plain.content  # the control: the listener is reachable without isolation
    assert isolated.is_error and "connected" not in isolated.content


@needs_bwrap
@pytest.mark.process
def test_under_bubblewrap_a_timeout_still_kills_everything(workspace):
    marker = f"midstream-test-{uuid.uuid4().hex}"
    result, _, _ = run(workspace, f"python3 -c 'import time; time.sleep(300)' {marker}", isolation="bwrap", timeout=1)
    assert "timed out" in result.content
    assert wait_until(lambda: not processes_with(marker), 5), processes_with(marker)
