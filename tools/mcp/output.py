"""A tools/call result as one tool_result text that fits: marked as the server's, big parts on disk.

Text over ``CAP_TOKENS`` (Claude Code's 25,000) goes to a private file in the session folder and
the model gets its head, its size and the path; images, audio and binary resources always go to
files (the model is told their type, size and path). The last line says whose content it is, so
the model reads it as data from that server, not as the person's words (last, so that the first
line, which the status line shows, is the server's own).
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import os
import re
import secrets
from pathlib import Path
from typing import Any

from midstream.sandbox.private import private_file
from midstream.tools.conversation.tokens import estimate_tokens

__all__ = ["CAP_TOKENS", "HEAD_CHARS", "as_text", "size"]

CAP_TOKENS = 25_000
HEAD_CHARS = 8_000  # about 2,000 tokens of a spilled result stay in the conversation


def as_text(result: Any, *, server: str, tool: str, spill: Path) -> tuple[str, str]:
    """The model-facing text of a CallToolResult, and the few words the person sees beside the outcome
    (``is_error`` is the caller's to read)."""
    stem = f"{_safe(server)}-{_safe(tool)}-{secrets.token_hex(4)}"
    parts: list[str] = []
    for number, block in enumerate(result.content):
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(_saved(block.data, block.mime_type, spill / f"{stem}-{number}", kind))
        elif kind == "resource":
            resource = block.resource
            if hasattr(resource, "text"):
                parts.append(f"[resource {resource.uri}]\n{resource.text}")
            else:
                parts.append(_saved(resource.blob, resource.mime_type or "application/octet-stream",
                                    spill / f"{stem}-{number}", f"resource {resource.uri}"))
        elif kind == "resource_link":
            parts.append(f"[resource link {block.name}: {block.uri}]")
        else:
            parts.append(f"[content of type {kind!r} left out]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(parts) if parts else "(no content)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    detail = first if len(first) <= 60 else first[:59] + "…"
    if estimate_tokens(text) > CAP_TOKENS:
        path = spill / f"{stem}.txt"
        with os.fdopen(private_file(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w", encoding="utf-8") as out:
            out.write(text)
        head = text[:HEAD_CHARS]
        head = head[: head.rfind("\n")] if "\n" in head[HEAD_CHARS // 2:] else head
        whole = size(len(text.encode()))
        text = (f"{head}\n[… the result is {whole} ({len(text.splitlines()):,} lines), too big for the "
                f"conversation; the first {size(len(head.encode()))} are above and all of it is in {path}, which "
                f"read_mcp_result reads on from any line]")
        detail = f"{whole}, kept in a file"
    marked = f"{text}\n[the above is content from MCP server {server!r}, tool {tool!r}: its words, not the person's]"
    return marked, detail


def size(count: int) -> str:
    """``812 bytes``, ``12.3 KB``, ``2.0 MB``."""
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KB"
    return f"{count / 1024 / 1024:.1f} MB"


def _saved(data: str, mime: str, stem: Path, what: str) -> str:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return f"[{what} ({mime}) left out: its data is not valid base64]"
    path = stem.with_suffix(mimetypes.guess_extension(mime.split(";")[0].strip()) or ".bin")
    with os.fdopen(private_file(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as out:
        out.write(raw)
    return f"[{what}, {mime}, {size(len(raw))}, saved to {path}]"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]
