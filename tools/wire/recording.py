"""``--record DIR`` and ``--replay DIR``: the model service's side of a session, on disk.

Recording keeps, for request N: ``N.request.json`` (the body we sent), ``N.response.json`` (status,
headers, and how the body ended: ``complete`` or the error that broke it) and ``N.response.sse``
(the raw bytes as they arrived). Replaying serves those files back through an ``httpx2``
transport, so the reply goes through the same SSE parser, assembler, scheduler, tools and
renderer as it did live, and a dropped connection is dropped again at the same byte. API keys are
never written: only the body and the response are kept.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
from midstream.sandbox.private import private_dir, private_file, write_private

__all__ = ["Recorder", "ReplayTransport"]

log = logging.getLogger("midstream.recording")


class Recorder:
    """Writes each request and its response as they happen."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        private_dir(directory)
        self._count = len(list(directory.glob("*.request.json")))
        self._lock = threading.Lock()

    def request(self, body: dict[str, Any]) -> int:
        with self._lock:
            self._count += 1
            number = self._count
        write_private(self.directory / f"{number:04d}.request.json", json.dumps(body, indent=1, ensure_ascii=False))
        return number

    def response(self, number: int, status: int, headers: dict[str, str]) -> None:
        self._meta(number, {"status": status, "headers": headers, "ended": "open"})

    def tee(self, number: int, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Pass the body through, appending every byte to the recording as it arrives."""
        ended = "complete"
        with os.fdopen(private_file(self.directory / f"{number:04d}.response.sse"), "ab") as f:
            try:
                for chunk in chunks:
                    f.write(chunk)
                    f.flush()
                    yield chunk
            except BaseException as exc:
                ended = f"error: {type(exc).__name__}: {exc}"
                raise
            finally:
                meta = json.loads((self.directory / f"{number:04d}.response.json").read_text())
                self._meta(number, {**meta, "ended": ended})

    def failed(self, number: int, error: str) -> None:
        self._meta(number, {"status": None, "headers": {}, "ended": f"error: {error}"})

    def _meta(self, number: int, meta: dict[str, Any]) -> None:
        write_private(self.directory / f"{number:04d}.response.json", json.dumps(meta, indent=1))


class ReplayTransport(httpx2.BaseTransport):
    """Answers the Nth request with the Nth recorded response, faults included."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._count = 0
        if not directory.is_dir() or not any(directory.glob("*.response.json")):
            raise FileNotFoundError(f"no recording in {directory} (make one with --record)")
        for path in directory.iterdir():  # checked before anything is read: a /dev/zero must not eat memory
            if path.name.endswith((".json", ".sse")):
                _check_recorded(path)
        self.provider = _recorded_wire(directory)

    def check_provider(self, provider: str) -> str | None:
        """Why this recording cannot be replayed on ``provider``'s wire, or None: the replies of one wire
        read as the other's are malformed events, and retrying them only consumes the recording."""
        if self.provider is None or self.provider == provider:
            return None
        return (f"{self.directory} was recorded with --provider {self.provider}: replay it with "
                f"--provider {self.provider} (not {provider}).")

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self._count += 1
        number = self._count
        meta_path = self.directory / f"{number:04d}.response.json"
        if not meta_path.exists():  # retrying cannot make it longer
            from midstream.tools.wire.model import FatalModelError  # (model.py imports this module)

            raise FatalModelError(f"the recording ends at response {number - 1}: this session asked for more")
        meta = json.loads(_read_recorded(meta_path))
        recorded = self.directory / f"{number:04d}.request.json"
        if recorded.exists() and json.loads(_read_recorded(recorded)) != json.loads(request.read()):  # streamed
            log.warning("replay: request %d differs from the recording; serving the recorded reply", number)
        if meta["status"] is None:
            raise httpx2.ConnectError(meta["ended"], request=request)
        body = _read_recorded(self.directory / f"{number:04d}.response.sse")
        headers = {k: v for k, v in meta["headers"].items() if k.lower() not in {"content-length", "transfer-encoding"}}
        return httpx2.Response(meta["status"], headers=headers, stream=_Replayed(body, meta["ended"], request),
                               request=request)


RECORDED_LIMIT = 256 << 20  # bytes of one recorded file


class RecordingUnreadable(ValueError):
    """A recorded file that is not a regular file of a sane size: one line, never an out-of-memory."""


def _check_recorded(path: Path) -> None:
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise RecordingUnreadable(f"{path} is not a regular file: not a recording")
    if info.st_size > RECORDED_LIMIT:
        raise RecordingUnreadable(f"{path} is {info.st_size:,} bytes, over the {RECORDED_LIMIT >> 20} MiB a "
                                  "recorded file may have")


def _read_recorded(path: Path) -> bytes:
    """A recorded file's bytes: a regular file, read no further than the limit (it may change under us)."""
    with open(path, "rb", buffering=0, opener=lambda p, f: os.open(p, f | os.O_NONBLOCK)) as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise RecordingUnreadable(f"{path} is not a regular file: not a recording")
        data = file.read(RECORDED_LIMIT + 1)
    if len(data) > RECORDED_LIMIT:
        raise RecordingUnreadable(f"{path} grew past {RECORDED_LIMIT >> 20} MiB while being replayed")
    return data


def _recorded_wire(directory: Path) -> str | None:
    """The provider whose wire the first recorded request speaks: a Chat Completions body asks for
    ``stream_options`` (usage in the last chunk), a Messages body never does."""
    first = directory / "0001.request.json"
    try:
        body = json.loads(_read_recorded(first))
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    return "openai" if "stream_options" in body else "anthropic"


class _Replayed(httpx2.SyncByteStream):
    def __init__(self, body: bytes, ended: str, request: httpx2.Request) -> None:
        self._body, self._ended, self._request = body, ended, request

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self._body), 65536):
            yield self._body[start : start + 65536]
        if self._ended != "complete":
            raise httpx2.RemoteProtocolError(f"replayed: {self._ended}", request=self._request)
