"""The log file: rotating, safe with several agents writing at once, and free of secrets.

``concurrent-log-handler`` locks the file around each write and rotation, so agents running side
by side in one repository interleave whole lines instead of corrupting the file. Every record
passes ``RedactSecrets`` first: the values of secret-looking environment variables, API-key
shapes (Anthropic, OpenAI, AWS, GitHub, GitLab, Slack, Google, Stripe, Hugging Face, npm, JWTs,
private keys), Authorization / x-api-key headers, and any long random-looking value after a word
like key, token, secret or password are replaced before anything is formatted to disk.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import math
import os
import queue
import re
from pathlib import Path

from midstream.sandbox.private import private_file
from midstream.tools.startup import LATER

__all__ = ["RedactSecrets", "setup_logging"]

_SECRET_VARIABLE = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH)", re.IGNORECASE)
# Credential shapes, wherever they appear in a message (a command the model wrote, a URL, an error).
# A "keep" group is left in place so the line still says what was redacted.
_SECRET_SHAPES = [re.compile(shape) for shape in (
    r"sk-ant-[A-Za-z0-9_\-]{8,}",  # Anthropic
    r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",  # OpenAI
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b",  # AWS access key ids
    r"(?i)(?P<keep>aws_secret_access_key['\"]?\s*[:=]\s*['\"]?)[A-Za-z0-9/+=]{30,}",
    r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{20,}",  # GitHub
    r"\bxox[abposre]-[A-Za-z0-9-]{10,}|hooks\.slack\.com/services/[A-Za-z0-9/]+",  # Slack
    r"\bAIza[0-9A-Za-z_\-]{35}\b",  # Google
    r"\bgl(?:pat|dt|rt|ptt|cbt|imt|oas|soat|ffct)-[0-9A-Za-z_\-]{20,}",  # GitLab
    r"\bhf_[A-Za-z0-9]{30,}\b",  # Hugging Face
    r"\bnpm_[A-Za-z0-9]{36}\b",  # npm
    r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}",  # Stripe
    r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]+",  # JSON web tokens
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
    r"(?i)(?P<keep>(?:x-api-key|authorization|proxy-authorization)['\"]?\s*[:=]\s*['\"]?)(?:bearer\s+|basic\s+)?[^\s'\",}]+",
    r"(?i)(?P<keep>\b(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=\-]{8,}",
    r"(?P<keep>[a-z][a-z0-9+.\-]*://[^\s:/@]+:)[^\s@/]+(?=@)",  # https://user:password@host
    r"(?i)(?P<keep>--?(?:password|passwd|pass)(?:=|\s+))[^\s'\"]+",  # --password VALUE, --password=VALUE
    r"(?P<keep>(?<![\w-])-p)(?=[^\s-])[^\s'\"]+",  # mysql -pPASSWORD
    r"(?P<keep>(?<![\w-])(?:-u|--user)[\s=]+[^\s:'\"]+:)[^\s'\"]+",  # curl -u user:password
    r"(?i)(?P<keep>\b[\w.-]*(?:password|passwd|secret|token|api_?key)[\w.-]*['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]{4,}",
)]


# Any long, random-looking value right after a word that says what it is (key, token, secret, password).
_NAMED_VALUE = re.compile(r"(?i)(?P<keep>\b[\w.-]*(?:key|token|secret|password|passwd|credential)s?\b['\"]?\W{1,3})"
                          r"(?P<value>[A-Za-z0-9+/_.~=\-]{20,})")


def _random_looking(value: str) -> bool:
    """Shannon entropy of at least 3.5 bits a character, and letters with digits: a key, not a word."""
    counts = {c: value.count(c) for c in set(value)}
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= 3.5 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


class RedactSecrets(logging.Filter):
    """Replaces secrets in a record's final message (arguments included) with ``[redacted]``."""

    def __init__(self, extra_secrets: list[str] | None = None) -> None:
        super().__init__()
        values = [v for k, v in os.environ.items() if _SECRET_VARIABLE.search(k) and len(v) >= 8]
        self._values = sorted(set(values + [s for s in extra_secrets or [] if s]), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "[redacted]")
        for shape in _SECRET_SHAPES:
            text = shape.sub(lambda m: (m.groupdict().get("keep") or "") + "[redacted]", text)
        return _NAMED_VALUE.sub(lambda m: m["keep"] + "[redacted]" if _random_looking(m["value"]) else m[0], text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def setup_logging(directory: Path, *, level: int = logging.INFO, secrets: list[str] | None = None) -> Path:
    """Send our loggers to ``directory/midstream.log`` (5 MB × 3 files) through the redaction filter.

    Records are redacted and queued at once; a background thread, started once the first request is
    written, imports concurrent-log-handler (~30 ms) and writes them, so neither the import nor the file
    locking sits on the path from start-up to the first request, and nothing logged meanwhile is lost.
    """
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    front = logging.handlers.QueueHandler(records)
    front.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.addHandler(front)
    root.setLevel(level)
    for noisy in ("httpx2", "httpcore2", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    path = directory / "midstream.log"
    listening: list[logging.handlers.QueueListener] = []

    def start_writer() -> None:
        from concurrent_log_handler import ConcurrentRotatingFileHandler

        try:
            os.close(private_file(path))  # created 0600 in a 0700 directory before the handler opens it
        except OSError:  # a state directory that cannot hold the log: no log (the session says why it failed)
            root.removeHandler(front)
            return
        handler = ConcurrentRotatingFileHandler(str(path), maxBytes=5_000_000, backupCount=3, encoding="utf-8",
                                                chmod=0o600)
        handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
        listener = logging.handlers.QueueListener(records, handler)
        listener.start()
        listening.append(listener)

    def drain() -> None:
        try:
            writer.wait(5)  # started now if the first request never went out: what was logged is kept
            for listener in listening:
                listener.stop()  # writes what is queued
        except KeyboardInterrupt:  # Ctrl-C on the way out: leave now, without the rest of the log
            pass

    writer = LATER.run("log-writer", start_writer)  # once the first request is written (tools/startup.py)
    atexit.register(drain)
    return path
