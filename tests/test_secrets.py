"""Secrets the model writes into commands never reach the log in clear; session files are private."""

from __future__ import annotations

import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from midstream.tools.cli.logs import RedactSecrets
from midstream.tools.conversation.transcript import state_dir
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import program_env

SECRETS = {
    "aws": "AKIA" + uuid.uuid4().hex[:16].upper(),
    "github": "ghp_" + uuid.uuid4().hex + "abcd",
    "slack": "xoxb-12345678901-" + uuid.uuid4().hex[:12],
    "anthropic": "sk-ant-api03-" + uuid.uuid4().hex,
    "openai": "sk-proj-" + uuid.uuid4().hex,
    "bearer": uuid.uuid4().hex,
    "basic": uuid.uuid4().hex[:20],
    "mysql": "Pw" + uuid.uuid4().hex[:10],
    "password": "Pw" + uuid.uuid4().hex[:10],
    "url": "Pw" + uuid.uuid4().hex[:10],
}

COMMAND = (f"aws s3 ls --key {SECRETS['aws']}; git clone https://x-token:{SECRETS['url']}@github.com/o/r; "
           f"GH={SECRETS['github']} SLACK={SECRETS['slack']} K={SECRETS['anthropic']} O={SECRETS['openai']} "
           f"curl -H 'Authorization: Bearer {SECRETS['bearer']}' -H 'Proxy-Authorization: Basic {SECRETS['basic']}'; "
           f"mysql -uroot -p{SECRETS['mysql']} db; psql --password {SECRETS['password']}")


def test_gitlab_google_hugging_face_npm_and_named_random_values_are_redacted():
    tokens = {"gitlab": "glpat-" + uuid.uuid4().hex[:20], "google": "AIza" + uuid.uuid4().hex + "abc",
              "hugging face": "hf_" + uuid.uuid4().hex[:34], "npm": "npm_" + (uuid.uuid4().hex * 2)[:36],
              "named": "Zq8Lm3Xv9Tn2Wb7Kc4Rp6Yd1Hs5Gf0J"}
    line = (f"git clone https://oauth2@gitlab.com {tokens['gitlab']}; GOOGLE={tokens['google']}; "
            f"huggingface-cli login {tokens['hugging face']}; echo {tokens['npm']}; my deploy key: {tokens['named']}")
    redacted = RedactSecrets().redact(line)
    for name, value in tokens.items():
        assert value not in redacted, name
    kept = "the token expired; key: ordinary_configuration_name"  # words, not random values
    assert RedactSecrets().redact(kept) == kept


def test_every_credential_shape_is_redacted_wherever_it_appears():
    redacted = RedactSecrets().redact(f"rolled back: commands=[{COMMAND!r}]")
    for name, value in SECRETS.items():
        assert value not in redacted, name
    assert "mkdir -p build" in RedactSecrets().redact("mkdir -p build")  # ordinary options survive


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.process
def test_a_rolled_back_command_full_of_secrets_reaches_the_log_redacted_and_files_are_private(workspace, tmp_path):
    # A command that writes (so the rollback reports it) and carries the secrets as text, running none of them.
    ran = reply(ToolUse("t1", "bash", {"command": f"cat > notes.txt <<'EOF'\n{COMMAND}\nEOF"}),
                Text("and then", chunk=2, delay=0.15))  # slow: the command has run when the reply breaks off
    ran["drop_after"] = len(ran["events"]) - 3  # the command ran, then the reply broke off
    server = ScriptedServer([ran, reply(Text("Finished."))])
    record = tmp_path / "recording"
    with server:
        done = subprocess.run([sys.executable, "-m", "midstream", "-p", "go", "--isolation", "none", "--record",
                               str(record)], cwd=workspace, env=program_env(ANTHROPIC_BASE_URL=server.url),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    log = state_dir() / "logs" / "midstream.log"
    text = log.read_text()
    assert "rolled back" in text and "[redacted]" in text
    for name, value in SECRETS.items():
        assert value not in text, name
    (session,) = (state_dir() / "sessions").rglob("*.jsonl")
    for private in (log, session, *record.iterdir()):
        assert _mode(private) == 0o600, private
    for directory in (log.parent, session.parent, record):
        assert _mode(directory) == 0o700, directory
