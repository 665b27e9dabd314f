"""The sandbox as an attacker meets it: real bubblewrap, as root in CI, real commands in a tmp workspace.

What a command must not do whatever it is written as: keep a capability, remount, read midstream's
environment, write /etc or .git, create a missing protected path, reach a listener on 127.0.0.1.
What it must still do: git status/log, python3, pytest. And midstream's own start-up git call must
not run a program a hostile repository's config names.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from midstream.sandbox.isolation import bwrap_works, probe
from midstream.tools.registry import Decision, ToolContext
from midstream.tools.shell import bash
from midstream.tools.testing.scripted_server import ScriptedServer, Text, reply

from tests.helpers import git, program_env

needs_bwrap = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here (.ci/run installs it)")


def sh(workspace: Path, command: str, **decided):
    ctx = ToolContext(workspace, decision=Decision(isolation="bwrap", **decided))
    return bash.run(ctx, {"command": command, "timeout": 60})


@pytest.fixture
def repo(workspace: Path) -> Path:
    git(workspace, "init", "-q")
    (workspace / "app.py").write_text("print('hi')\n")
    (workspace / "test_app.py").write_text("def test_ok():\n    assert 1 + 1 == 2\n")
    git(workspace, "add", ".")
    git(workspace, "commit", "-qm", "first")
    return workspace


@needs_bwrap
def test_probe_found_no_capabilities():
    found = probe()
    assert found.available and found.reason == ""


@needs_bwrap
@pytest.mark.process
def test_a_command_has_no_capability_and_cannot_remount_or_unmount(repo):
    result = sh(repo, "grep -E '^Cap(Eff|Prm|Amb)' /proc/self/status")
    assert result.content.count("0000000000000000") == 3, result.content
    for attack in ("mount -o remount,rw /", "umount -l /proc", "mount -t tmpfs none /mnt",
                   "unshare -r true", "nsenter -t 1 -n true"):
        result = sh(repo, attack)
        assert result.is_error, f"{attack}: {result.content}"
    assert "Read-only" in sh(repo, "touch /etc/midstream-was-here").content
    assert not Path("/etc/midstream-was-here").exists()


@needs_bwrap
@pytest.mark.process
def test_midstream_environment_and_processes_are_out_of_reach(repo, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-topsecretvalue")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-topsecretvalue")
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-topsecretvalue")
    probe_all = ("env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; "
                 f"cat /proc/{os.getpid()}/environ 2>&1; cat /proc/{os.getppid()}/environ 2>&1; ls /proc")
    result = sh(repo, probe_all)
    assert "topsecretvalue" not in result.content
    pids = [name for name in result.content.split() if name.isdigit()]
    assert str(os.getpid()) not in pids and max(map(int, pids)) < 100  # a fresh pid namespace


@needs_bwrap
@pytest.mark.process
def test_git_data_and_protected_paths_cannot_be_written_or_created(repo):
    config = (repo / ".git" / "config").read_bytes()
    attacks = [
        "git config core.fsmonitor 'touch /tmp/pwned'",
        "echo '[core]\n\tfsmonitor = touch pwned' >> .git/config",
        "printf '#!/bin/sh\\ntouch pwned\\n' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit",
        "rm -rf .git", "mv .git moved", "ln -sf /tmp .git/hooks", "echo x > .gitmodules", "mkdir .midstream",
        "mkdir -p .midstream && echo '{}' > .midstream/settings.json",
    ]
    for attack in attacks:
        sh(repo, attack)
    assert (repo / ".git" / "config").read_bytes() == config
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    # The missing protected paths were pinned for each command and are gone again afterwards.
    assert not (repo / ".gitmodules").exists() and not (repo / ".midstream").exists()
    assert sh(repo, "git status --short").content == "[exit status 0]"  # the pins are invisible to git
    assert not (repo / "moved").exists()
    commit = sh(repo, "git -c user.email=a@b -c user.name=a commit -qam change")
    assert commit.is_error and "tell the person which git command to run" in commit.content


@needs_bwrap
@pytest.mark.process
def test_worktree_gitdir_and_nested_repositories_are_protected(repo, tmp_path):
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", str(linked))
    nested = linked / "vendor" / "lib"
    nested.mkdir(parents=True)
    git(nested, "init", "-q")
    common_config = (repo / ".git" / "config").read_bytes()
    nested_config = (nested / ".git" / "config").read_bytes()
    gitdir = Path((linked / ".git").read_text().split(":", 1)[1].strip())
    sh(linked, f"echo '[core]\n\tfsmonitor = x' >> {gitdir}/config.worktree; echo x >> {repo}/.git/config; "
               "echo x >> vendor/lib/.git/config; echo 'gitdir: /tmp' > .git")
    assert (repo / ".git" / "config").read_bytes() == common_config
    assert (nested / ".git" / "config").read_bytes() == nested_config
    assert not (gitdir / "config.worktree").exists()
    assert (linked / ".git").read_text().startswith(f"gitdir: {gitdir}")
    assert "On branch" in sh(linked, "git status").content  # git still works inside


@needs_bwrap
@pytest.mark.process
def test_network_is_off_by_default_and_the_result_says_so(repo):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    threading.Thread(target=lambda: listener.accept()[0].close(), daemon=True).start()
    connect = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('in')\""
    try:
        blocked = sh(repo, connect)
        allowed = sh(repo, connect, network=True)
    finally:
        listener.close()
    assert blocked.is_error and "in\n" not in blocked.content
    assert "no network access" in blocked.content and "--network" in blocked.content
    assert not allowed.is_error and "in" in allowed.content  # the control: --network lets it through


@needs_bwrap
@pytest.mark.process
def test_a_toolchain_under_tmp_stays_usable_while_the_rest_of_tmp_stays_private(repo, tmp_path, monkeypatch):
    tools = Path(tempfile.mkdtemp(prefix="toolchain-", dir="/tmp"))  # as a CI's virtualenv under /tmp
    secret = Path(tempfile.mkdtemp(prefix="other-", dir="/tmp"))
    try:
        (tools / "bin").mkdir()
        (tools / "bin" / "hello-tool").write_text("#!/bin/sh\necho tool ran\n")
        (tools / "bin" / "hello-tool").chmod(0o755)
        (secret / "note.txt").write_text("someone else's")
        monkeypatch.setenv("PATH", f"{tools / 'bin'}{os.pathsep}{os.environ['PATH']}")
        ran = sh(repo, "hello-tool")
        peek = sh(repo, f"cat {secret / 'note.txt'}")
        written = sh(repo, f"echo x > {tools / 'bin' / 'planted'}")
    finally:
        shutil.rmtree(tools, ignore_errors=True)
        shutil.rmtree(secret, ignore_errors=True)
    assert not ran.is_error and "tool ran" in ran.content, ran.content
    assert peek.is_error and "someone else's" not in peek.content  # /tmp is still the sandbox's own
    assert written.is_error  # and the toolchain is read-only


@needs_bwrap
@pytest.mark.process
def test_ordinary_work_still_runs(repo):
    for command, expected in (("git status", "On branch"), ("git log --oneline", "first"),
                              ("python3 -c 'print(6 * 7)'", "42"),
                              (f"{sys.executable} -m pytest -q -p no:cacheprovider test_app.py", "1 passed"),
                              ("echo made > new.txt && cat new.txt && mktemp", "made")):
        result = sh(repo, command)
        assert not result.is_error and expected in result.content, (command, result.content)


@pytest.mark.process
def test_planted_fsmonitor_and_filters_do_not_run_when_midstream_starts(repo, tmp_path):
    marker = tmp_path / "pwned"
    (repo / ".gitattributes").write_text("*.py filter=evil diff=evil\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-qm", "attributes")
    for key in ("core.fsmonitor", "filter.evil.process", "filter.evil.clean", "diff.evil.textconv",
                "core.pager", "diff.external"):
        git(repo, "config", key, f"touch {marker}-{key}; cat")
    (repo / "app.py").write_text("print('changed')\n")  # a modified file: status must look at it
    server = ScriptedServer([reply(Text("done"))])
    with server:
        done = subprocess.run([sys.executable, "-m", "midstream", "-p", "hi", "--isolation", "none"], cwd=repo,
                              env=program_env(ANTHROPIC_BASE_URL=server.url), capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 0, done.stderr
    assert "app.py" in str(server.requests[0]["body"]["system"])  # the start-up git status did run
    assert list(tmp_path.glob("pwned*")) == []
    subprocess.run(["git", "status"], cwd=repo, capture_output=True)
    assert list(tmp_path.glob("pwned*"))  # the control: a plain git status runs what was planted


@pytest.fixture
def path_without_bwrap(tmp_path: Path) -> str:
    """A PATH with git and bash but no bubblewrap, as on a machine where it is not installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("git", "bash", "sh", "env"):
        if found := shutil.which(program):
            (bin_dir / program).symlink_to(found)
    return str(bin_dir)


@pytest.mark.parametrize("output", ["text", "json", "stream-json"])
@pytest.mark.process
def test_an_unconfined_session_says_so_at_start_in_every_output_format(workspace, path_without_bwrap, output):
    server = ScriptedServer([reply(Text("done"))])
    with server:
        done = subprocess.run([sys.executable, "-m", "midstream", "-p", "hi", "--output-format", output],
                              cwd=workspace, env=program_env(ANTHROPIC_BASE_URL=server.url, PATH=path_without_bwrap),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    if output == "text":
        (warning,) = [line for line in done.stderr.splitlines() if "unconfined" in line]
        assert "bubblewrap" in warning and "install" in warning
    elif output == "json":
        sandbox = json.loads(done.stdout)["sandbox"]
        assert sandbox["confined"] is False and "not installed" in sandbox["message"]
    else:
        init, first = map(json.loads, done.stdout.splitlines()[:2])  # right after the session's init line
        assert init["sandbox"] == "unavailable" and first["event"] == "SandboxStatus"
        assert first["confined"] is False and "install" in first["message"]


@pytest.mark.process
def test_isolation_bwrap_refuses_to_start_without_it(workspace, path_without_bwrap):
    done = subprocess.run([sys.executable, "-m", "midstream", "-p", "hi", "--isolation", "bwrap"], cwd=workspace,
                          env=program_env(ANTHROPIC_BASE_URL="http://127.0.0.1:9", PATH=path_without_bwrap),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "bubblewrap" in done.stderr and "Traceback" not in done.stderr


@needs_bwrap
@pytest.mark.process
def test_a_confined_session_is_quiet_about_it(workspace):
    server = ScriptedServer([reply(Text("done"))])
    with server:
        done = subprocess.run([sys.executable, "-m", "midstream", "-p", "hi"], cwd=workspace,
                              env=program_env(ANTHROPIC_BASE_URL=server.url), capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 0 and "unconfined" not in done.stderr


@needs_bwrap
@pytest.mark.process
def test_a_host_unix_socket_cannot_be_reached(repo):
    """A read-only bind does not stop connect(); root in the namespace is root to a daemon on the socket."""
    path = repo / "daemon.sock"
    daemon = socket.socket(socket.AF_UNIX)
    daemon.bind(str(path))
    daemon.listen()
    try:
        connect = f"python3 -c \"import socket; socket.socket(socket.AF_UNIX).connect('{path}'); print('reached')\""
        for network in (False, True):
            result = sh(repo, connect, network=network)
            assert result.is_error and "reached" not in result.content.replace("'reached'", "")
        assert "ok" in sh(repo, "python3 -c \"import socket; socket.socketpair(); print('ok')\"").content
    finally:
        daemon.close()


@needs_bwrap
@pytest.mark.parametrize("writable", [True, False])
@pytest.mark.process
def test_git_works_in_a_subdirectory_and_a_linked_worktree_under_tmp(repo, tmp_path, writable):
    (repo / "sub").mkdir()
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", str(linked))
    for workspace in (repo / "sub", linked):
        result = sh(workspace, "git status --short && git log --oneline", writable=writable)
        assert not result.is_error and "first" in result.content, result.content
    config = (repo / ".git" / "config").read_bytes()
    sh(repo / "sub", "echo x >> ../.git/config; git config core.fsmonitor x", writable=writable)
    assert (repo / ".git" / "config").read_bytes() == config


def test_midstreams_git_calls_do_not_run_a_submodules_planted_config(tmp_path):
    from midstream.sandbox.git import run_git

    marker = tmp_path / "pwned"
    git(tmp_path, "init", "-q", "sub")
    git(tmp_path / "sub", "commit", "-q", "--allow-empty", "-m", "s")
    git(tmp_path, "init", "-q", "main")
    main = tmp_path / "main"
    git(main, "-c", "protocol.file.allow=always", "submodule", "add", "-q", "../sub", "sub")
    git(main, "commit", "-qm", "m")
    git(main / "sub", "config", "core.fsmonitor", f"touch {marker}; false")
    (main / "sub" / "new").write_text("x")
    subprocess.run(["git", "status"], cwd=main, capture_output=True)
    assert marker.exists()  # the control: plain git runs it
    marker.unlink()
    for args in (["status", "--short"], ["diff", "--no-ext-diff", "--no-textconv"], ["log", "-1", "-p"]):
        assert run_git(args, main).returncode == 0
    assert not marker.exists()


@needs_bwrap
@pytest.mark.process
def test_hostile_git_pointers_neither_hang_nor_show_the_host(repo):
    """A .git that is a FIFO, a link to /proc, or a pointer file to /proc is data, not a path to bind."""
    for name, make in (("fifo", lambda p: os.mkfifo(p)), ("link", lambda p: p.symlink_to("/proc")),
                       ("pointer", lambda p: p.write_text("gitdir: /proc\n"))):
        (repo / name).mkdir()
        make(repo / name / ".git")
    result = sh(repo, f"ls -d /proc/{os.getpid()} link/.git/{os.getpid()} 2>&1; git status --short | head -3")
    assert f"cannot access '/proc/{os.getpid()}'" in result.content  # midstream is not in the sandbox's /proc
    assert f"cannot access 'link/.git/{os.getpid()}'" in result.content  # nor in the host's, through a link
    assert "??" not in result.content  # and the pinned paths do not show up as untracked files
