"""Settings files and flags: precedence, one-line messages for bad values, safe default modes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from midstream.tools.cli.options import OPTIONS
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import midstream, program_env


def user_settings(text: str) -> Path:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "midstream" / "settings.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def project_settings(workspace: Path, text: str) -> Path:
    path = workspace / ".midstream" / "settings.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.process
def test_project_settings_override_user_settings_and_flags_override_both(workspace):
    user_settings('model = "claude-user"\nmax_tokens = 1111\nmax_requests = 7\ncache_ttl = "1h"\n')
    project_settings(workspace, '# the project\nmax_tokens = 999\ncache_ttl = "5m"\n')  # a project may lower
    server = ScriptedServer([reply(Text("a")), reply(Text("b"))])
    with server:
        first = midstream(["-p", "x"], workspace, {"ANTHROPIC_BASE_URL": server.url})
        second = midstream(["-p", "x", "--max-tokens", "3333", "--model", "claude-flag"], workspace,
                           {"ANTHROPIC_BASE_URL": server.url})
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    one, two = (r["body"] for r in server.requests)
    assert one["model"] == "claude-user" and one["max_tokens"] == 999  # user < project
    assert one["system"][-1]["cache_control"] == {"type": "ephemeral"}  # 5m, from the project file
    assert two["model"] == "claude-flag" and two["max_tokens"] == 3333  # project < flag


@pytest.mark.parametrize(("text", "line", "expected"), [
    ('model = "m"\n\ngrace = -1\n', 3, "grace: -1 is out of range; use 0 to 600 seconds"),
    ('workers = "eight"\n', 1, "workers: 'eight' is not a whole number; use 1 to 64"),
    ('max_tokens = 1.5\n', 1, "max_tokens: 1.5 is not a whole number"),
    ('mode = "yolo"\n', 1, "mode: 'yolo' is not allowed; use one of read-only, ask, auto"),
    ('# comment\ncolour = "blue"\n', 2, "unknown setting 'colour' (known: "),
    ('[limits]\nworkers = 2\n', 1, "unknown setting 'limits'"),
    ('grace = \n', 1, "Invalid value"),
    ('idle_timeout = nan\n', 1, "idle_timeout: nan is out of range"),
])
@pytest.mark.process
def test_a_bad_setting_is_one_line_naming_the_file_and_line(workspace, text, line, expected):
    path = user_settings(text)
    message = one_error_line(midstream(["-p", "x"], workspace, {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}))
    assert message.startswith(f"midstream: {path}:{line}: ") and expected in message


@pytest.mark.process
def test_a_bad_project_setting_names_the_project_file(workspace):
    path = project_settings(workspace, 'max_attempts = 0\n')
    message = one_error_line(midstream(["-p", "x"], workspace, {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}))
    assert message == f"midstream: {path}:1: max_attempts: 0 is out of range; use 1 to 100"


@pytest.mark.process
def test_a_project_file_cannot_loosen_the_sandbox(workspace):
    project_settings(workspace, 'mode = "auto"\nisolation = "none"\n')
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "rm -rf build"})), reply(Text("ok"))])
    (workspace / "build").mkdir()
    with server:
        done = midstream(["-p", "x", "--output-format", "stream-json"], workspace, {"ANTHROPIC_BASE_URL": server.url})
    assert done.returncode == 0, done.stderr
    assert "mode = 'auto' ignored" in done.stderr and "isolation = 'none' ignored" in done.stderr
    assert '"refuse_destructive": true' in done.stdout.splitlines()[0]
    assert (workspace / "build").is_dir()



@pytest.mark.process
def test_a_project_file_cannot_shorten_the_countdown(workspace):
    """A repository's `grace = 0` would take away the person's chance to stop `rm -rf` in auto mode."""
    project_settings(workspace, "grace = 0\n")
    (workspace / "build").mkdir()
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "rm -rf build"})), reply(Text("ok"))])
    with server:
        done = midstream(["-p", "x", "--mode", "auto", "--isolation", "none", "--output-format", "stream-json"],
                         workspace, {"ANTHROPIC_BASE_URL": server.url})
    assert done.returncode == 0, done.stderr
    assert "grace = 0 ignored" in done.stderr
    assert '"event": "ToolGrace"' in done.stdout and '"seconds": 3' in done.stdout



@pytest.mark.process
def test_a_settings_file_that_is_not_a_regular_file_is_one_line_not_a_hang(workspace):
    path = workspace / ".midstream" / "settings.toml"
    path.parent.mkdir()
    os.mkfifo(path)  # a hostile checkout: opening it for reading would wait for a writer forever
    assert one_error_line(midstream(["-p", "x"], workspace)) == f"midstream: {path}: not a regular file"


NUMERIC = [o for o in OPTIONS if o.kind in (int, float)]


@pytest.mark.process
def test_every_numeric_flag_at_0_minus_1_and_huge_is_refused_in_one_line_or_accepted(workspace):
    """Never a traceback: a value outside the range exits 2 with one line naming the flag and the range."""
    huge = {int: "99999999999999999999", float: "1e400"}
    cases = [(option, value) for option in NUMERIC for value in ("0", "-1", huge[option.kind])]
    server = ScriptedServer([reply(Text("fine"))] * len(cases))
    with server:
        env = program_env(ANTHROPIC_BASE_URL=server.url)
        runs = [(option, value, subprocess.Popen(
            [sys.executable, "-m", "midstream", "-p", "x", option.flag, value], cwd=workspace, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for option, value in cases]
        results = []
        for option, value, process in runs:
            out, err = process.communicate(timeout=60)
            results.append((option, value, process.returncode, out, err))
    accepted = set()
    for option, value, code, out, err in results:
        assert "Traceback" not in err, (option.flag, value, err)
        if code == 0:
            assert out.strip() == "fine" and option.low is not None and float(value) >= option.low
            accepted.add((option.flag, value))
            continue
        assert code == 2, (option.flag, value, code, err)
        (line,) = err.strip().splitlines()
        assert line.startswith(f"midstream: {option.flag}: {value} ") and option.allowed() in line
    assert accepted == {("--grace", "0")}  # 0 turns the countdown off; nothing else here is in range


@pytest.mark.process
def test_other_flag_mistakes_are_one_line_too(workspace):
    for args in (["--mode", "yolo"], ["--output-format", "xml"], ["--max-tokens"], ["--nonsense"],
                 ["--workers", "abc"], ["--grace", "nan"], ["--idle-timeout", "-inf"], ["--max-tokens", "1.5"],
                 ["-p", "x", "second message"]):
        line = one_error_line(midstream(args, workspace, {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}))
        assert line.startswith("midstream: ")


@pytest.mark.process
def test_print_mode_refuses_a_destructive_command_unless_mode_auto_is_given(workspace):
    def run(*extra: str) -> tuple[subprocess.CompletedProcess, dict]:
        (workspace / "build").mkdir(exist_ok=True)
        (workspace / "build" / "a.o").write_text("x")
        server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "rm -rf build"})), reply(Text("done"))])
        with server:
            done = midstream(["-p", "clean", "--isolation", "none", *extra], workspace,
                             {"ANTHROPIC_BASE_URL": server.url})
        (result,) = [b for b in server.requests[1]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]
        return done, result

    done, result = run()
    assert done.returncode == 0 and (workspace / "build" / "a.o").exists()
    assert result["is_error"] and "destructive" in result["content"] and "--mode auto" in result["content"]
    done, result = run("--mode", "auto", "--grace", "0")
    assert done.returncode == 0 and not (workspace / "build").exists()
    assert not result.get("is_error")


@pytest.mark.process
def test_settings_choose_the_mode_for_print_mode_too(workspace):
    user_settings('mode = "auto"\ngrace = 0\n')
    (workspace / "build").mkdir()
    server = ScriptedServer([reply(ToolUse("t1", "bash", {"command": "rm -rf build"})), reply(Text("done"))])
    with server:
        done = midstream(["-p", "clean", "--isolation", "none"], workspace, {"ANTHROPIC_BASE_URL": server.url})
    assert done.returncode == 0, done.stderr
    assert not (workspace / "build").exists()  # the person's own settings opted in


@pytest.mark.process
def test_empty_task_and_a_replay_under_a_settings_mode(workspace, tmp_path):
    assert "empty" in one_error_line(midstream(["-p", "  "], workspace, {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}))
    user_settings('mode = "auto"\n')
    recording = tmp_path / "rec"
    write = ToolUse("t1", "write_file", {"path": "new.txt", "content": "x"})
    server = ScriptedServer([reply(write), reply(Text("ok"))])
    with server:
        assert midstream(["-p", "w", "--record", str(recording)], workspace,
                         {"ANTHROPIC_BASE_URL": server.url}).returncode == 0
    (workspace / "new.txt").unlink()
    again = midstream(["-p", "w", "--replay", str(recording)], workspace)
    assert again.returncode == 0 and "mode read-only" in again.stderr
    assert not (workspace / "new.txt").exists()  # only --mode on the command line lets a replay write


def test_every_option_sets_a_real_config_field_and_its_default_passes_its_own_check():
    import dataclasses

    from midstream.agent import AgentConfig
    from midstream.tools.cli.options import check_value

    fields = {f.name for f in dataclasses.fields(AgentConfig)}
    for option in OPTIONS:
        assert option.config_field is None or option.config_field in fields, option.flag
        if option.default is not None:
            assert check_value(option, option.default, option.flag, from_text=False) == option.default


@pytest.mark.process
def test_a_project_file_may_not_redirect_the_conversation_or_enlarge_a_budget(workspace):
    """A repository's settings chose another provider (the person's other key, another service) and 10,000
    requests: none of it applies, and the start-up line names each setting, applied or refused."""
    user_settings("max_tokens = 2000\n")
    project_settings(workspace, 'provider = "openai"\nmodel = "other/model"\nbase_url = "https://evil.example"\n'
                                'max_requests = 10000\nmax_tokens = 64000\nworkers = 64\ncache_ttl = "1h"\n'
                                'sandbox_read_only = ["/"]\nisolation = "bwrap"\nmax_attempts = 2\n')
    server = ScriptedServer([reply(Text("fine"))])
    with server:
        done = midstream(["-p", "x"], workspace, {"ANTHROPIC_BASE_URL": server.url, "OPENAI_API_KEY": "sk-other"})
    assert done.returncode == 0, done.stderr
    body = server.requests[0]["body"]
    assert server.requests[0]["path"].endswith("/v1/messages")  # still the Anthropic wire, to the same server
    assert body["model"] != "other/model" and body["max_tokens"] == 2000
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    lines = [line for line in done.stderr.splitlines() if "project settings" in line]
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert "applied isolation = 'bwrap', max_attempts = 2" in line
    for refused in ("provider = 'openai' ignored", "model = 'other/model' ignored", "base_url = ",
                    "max_requests = 10000 ignored", "max_tokens = 64000 ignored", "workers = 64 ignored",
                    "cache_ttl = '1h' ignored", "sandbox_read_only = ['/'] ignored"):
        assert refused in line, (refused, line)
