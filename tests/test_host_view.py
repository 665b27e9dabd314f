"""What a sandboxed command can see of the host: the system, the workspace, toolchains; never secrets or state.

Real bubblewrap. The person's home is made outside /tmp (the sandbox's /tmp is private anyway, which
would hide a home under it for the wrong reason), with credentials, another session's transcript,
another workspace's undo data and the user settings planted in it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
from midstream.sandbox import hostview
from midstream.sandbox.isolation import bwrap_works
from midstream.tools.registry import Decision, ToolContext
from midstream.tools.shell import bash

pytestmark = [pytest.mark.process,
              pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here (.ci/run installs it)")]

SECRETS = {
    ".ssh/id_ed25519": "PRIVATE-KEY",
    ".aws/credentials": "AWS-SECRET",
    ".netrc": "NETRC-PASSWORD",
    ".cargo/credentials.toml": "CARGO-TOKEN",
    ".local/state/midstream/sessions/other-1234/transcript.jsonl": "OTHER-SESSION",
    ".local/state/midstream/snapshots/other-ws/undo.env": "OTHER-UNDO",
    ".config/midstream/settings.toml": 'isolation = "bwrap"\n',
}


@pytest.fixture
def home(monkeypatch):
    base = Path("/var/lib") if Path("/var/lib").is_dir() and Path("/var/lib").stat().st_uid == 0 else Path.home()
    root = base / f"midstream-test-{uuid.uuid4().hex[:8]}"
    try:
        root.mkdir()
    except OSError:
        pytest.skip("no place outside /tmp to make a home in")
    for name, text in SECRETS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / ".cargo" / "bin").mkdir(parents=True)
    (root / ".cargo" / "bin" / "mytool").write_text("#!/bin/sh\necho mytool ran\n")
    (root / ".cargo" / "bin" / "mytool").chmod(0o755)
    monkeypatch.setenv("HOME", str(root))
    monkeypatch.setenv("XDG_STATE_HOME", str(root / ".local" / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / ".config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/0")
    monkeypatch.setenv("PATH", f"{root / '.cargo' / 'bin'}:{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def sh(workspace: Path, command: str) -> str:
    ctx = ToolContext(workspace=workspace, decision=Decision(isolation="bwrap"))
    return bash.run(ctx, {"command": command, "timeout": 120}).content


def _cat_all(home: Path) -> str:
    return "; ".join(f"cat {home / name} 2>&1" for name in SECRETS)


@pytest.mark.parametrize("where", ["a project in HOME", "HOME itself"])
def test_no_credential_transcript_undo_data_or_setting_is_readable(home, where):
    workspace = home / "proj" if where == "a project in HOME" else home
    workspace.mkdir(exist_ok=True)
    (workspace / "visible.txt").write_text("VISIBLE")
    out = sh(workspace, f"cat visible.txt; {_cat_all(home)}; echo; env; ls -a /run /var/run 2>&1")
    assert "VISIBLE" in out
    for text in SECRETS.values():
        assert text.strip() not in out, out
    assert "XDG_STATE_HOME" not in out and "XDG_CONFIG_HOME" not in out and "XDG_RUNTIME_DIR" not in out
    assert f"HOME={home}" in out
    assert "cannot access '/run'" in out and "cannot access '/var/run'" in out
    # The settings file cannot be rewritten either (the next session would start unconfined).
    settings = home / ".config" / "midstream" / "settings.toml"
    sh(workspace, f"echo 'isolation = \"none\"' > {settings}")
    assert settings.read_text() == SECRETS[".config/midstream/settings.toml"]
    # Nor moved aside for a new one: a directory holding a hidden path cannot be renamed.
    sh(workspace, f"mv {home}/.config {home}/.config-old; mv {home}/.local {home}/.local-old; "
                  f"mkdir -p {settings.parent} && echo 'isolation = \"none\"' > {settings}")
    assert settings.read_text() == SECRETS[".config/midstream/settings.toml"]
    assert not (home / ".config-old").exists() and not (home / ".local-old").exists()


def test_toolchains_in_home_run_read_only_and_the_rest_of_home_is_empty(home):
    workspace = home / "proj"
    workspace.mkdir()
    other = home / "other-workspace"
    other.mkdir()
    (other / ".env").write_text("OTHER-WORKSPACE-SECRET")
    out = sh(workspace, f"mytool; touch {home}/.cargo/bin/planted 2>&1; ls -A $HOME; cat {other}/.env 2>&1")
    assert "mytool ran" in out and "Read-only file system" in out
    assert not (home / ".cargo" / "bin" / "planted").exists()
    assert "OTHER-WORKSPACE-SECRET" not in out and "No such file" in out
    listed = set(out.split())
    assert {".cache", ".cargo"} <= listed and ".ssh" not in listed and ".aws" not in listed


def test_a_path_added_in_the_settings_is_visible_read_only(home):
    extra = home / "datasets"
    extra.mkdir()
    (extra / "a.csv").write_text("1,2\n")
    workspace = home / "proj"
    workspace.mkdir()
    hostview.configure(hostview.HostView(read_only=(extra,)))
    try:
        out = sh(workspace, f"cat {extra}/a.csv; touch {extra}/b 2>&1")
    finally:
        hostview.configure(hostview.HostView())
    assert "1,2" in out and "Read-only file system" in out


def _wheel(directory: Path) -> Path:
    """The smallest installable wheel, written by hand (no build backend, no network)."""
    path = directory / "tinypkg-1.0-py3-none-any.whl"
    files = {
        "tinypkg/__init__.py": "VALUE = 42\n",
        "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                       "Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "tinypkg-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in {**files, "tinypkg-1.0.dist-info/RECORD": record}.items():
            archive.writestr(name, text)
    return path


def test_ordinary_work_pip_install_of_a_local_wheel_and_npm(home):
    workspace = home / "proj"
    workspace.mkdir()
    _wheel(workspace)
    out = sh(workspace, f"{sys.executable} -m venv .venv && .venv/bin/pip install --no-index -q "
                        "tinypkg-1.0-py3-none-any.whl && .venv/bin/python -c 'import tinypkg; print(tinypkg.VALUE)'")
    assert out.splitlines()[-2:] == ["42", "[exit status 0]"], out
    if shutil.which("npm"):
        out = sh(workspace, "npm --version && node -e 'console.log(require(\"os\").cpus().length > 0)'")
        assert "true" in out and "[exit status 0]" in out, out


def test_the_package_cache_is_private_to_the_workspace(home):
    first, second = home / "one", home / "two"
    first.mkdir()
    second.mkdir()
    sh(first, "mkdir -p ~/.cache/pip && echo poisoned > ~/.cache/pip/wheel")
    assert "poisoned" in sh(first, "cat ~/.cache/pip/wheel")
    assert "poisoned" not in sh(second, "cat ~/.cache/pip/wheel 2>&1")


def test_the_mount_table_lists_only_the_allowlist(home):
    workspace = home / "proj"
    workspace.mkdir()
    table = sh(workspace, "cat /proc/self/mountinfo")
    targets = {line.split()[4] for line in table.splitlines() if line[:1].isdigit()}
    assert str(workspace) in targets and "/usr" in targets and "/tmp" in targets
    assert not any(t == "/run" or t.startswith(("/run/", "/var/run", "/sys", "/home", "/root/.ssh")) for t in targets)
    assert str(home) in targets  # the empty tmpfs HOME
    subprocess.run(["true"], check=True)


def test_with_home_as_the_workspace_a_command_cannot_create_a_settings_file_for_the_next_session(home):
    shutil.rmtree(home / ".config")  # no settings file yet: the place is pinned, not merely hidden
    out = sh(home, "mkdir -p ~/.config/midstream 2>&1; echo 'isolation = \"none\"' > ~/.config/midstream/settings.toml")
    assert "Read-only file system" in out or "Permission denied" in out, out
    assert not (home / ".config").exists()  # and the pin left nothing behind
