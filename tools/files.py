"""File tools: read, write, edit. Every path goes through the sandbox's confinement first.

Then every open goes through ``sandbox.fdio``, which walks the checked path without following any
link, so what is read or written is what was checked, and only regular files are opened (a FIFO or
a device is refused instead of hanging the tool). Reading streams in chunks and keeps at most
``READ_MAX_LINE_CHARS`` of any line, so a 2 GB file of one line costs what the result costs.
"""

from __future__ import annotations

import codecs
import contextlib
import difflib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from midstream.sandbox import fdio
from midstream.sandbox.paths import confine, display_path
from midstream.tools.registry import (
    Access,
    Facts,
    Output,
    ToolContext,
    ToolError,
    Wording,
    counted,
    tool,
    workspace_key,
)

__all__ = ["edit_file", "is_binary", "read_file", "remove_stale_temporaries", "write_file"]

READ_MAX_LINES = 2000
READ_MAX_BYTES = 256 * 1024
READ_MAX_LINE_CHARS = 2000
DIFF_MAX_BYTES = 2 * 1024 * 1024  # an overwrite of a larger file shows no diff
_SNIFF_BYTES = 8192


def _reads_path(workspace: Path, args: dict[str, Any]) -> Access:
    return Access.reading(workspace_key(workspace, str(args.get("path", "."))))


def is_binary(path: Path) -> bool:
    """A NUL byte near the start is how git and grep decide, and so do we."""
    with fdio.open_regular(path) as (fd, _):
        return b"\0" in os.pread(fd, _SNIFF_BYTES, 0)


def _refusal(shown: str, exc: OSError) -> ToolError:
    if isinstance(exc, fdio.NotRegular):
        return ToolError(f"{shown} is not a regular file ({exc.strerror}); it was not opened. Tools read and "
                         "write regular files only.")
    if isinstance(exc, fdio.PathChanged):
        return ToolError(f"{shown} changed while it was being opened (a directory on its path was replaced by a "
                         "link); nothing was read or written. Look at the path again before retrying.")
    return ToolError(f"{shown}: {exc.strerror or exc}")


def _lines(fd: int, cut: int) -> Iterator[tuple[str, bool]]:
    """The file's lines, each cut at ``cut`` characters (and whether it was), reading 64 KB at a time.

    Memory is bounded by the chunk and the cut, not by the longest line.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    line: list[str] = []
    kept = 0
    cut_short = False
    while True:
        chunk = os.read(fd, 65536)
        text = decoder.decode(chunk, final=not chunk)
        start = 0
        while (end := text.find("\n", start)) != -1:
            piece = text[start:end]
            if kept < cut:
                line.append(piece[: cut - kept])
            cut_short = cut_short or kept + len(piece) > cut
            yield "".join(line).rstrip("\r"), cut_short
            line, kept, cut_short, start = [], 0, False, end + 1
        rest = text[start:]
        if kept < cut:
            line.append(rest[: cut - kept])
        cut_short = cut_short or kept + len(rest) > cut
        kept += len(rest)
        if not chunk:
            if kept:
                yield "".join(line).rstrip("\r"), cut_short
            return


@tool(
    wording=Wording("Reading", "Read"),
    access=_reads_path,
    params={
        "path": "File path, relative to the workspace root.",
        "offset": "First line to return, counting from 1.",
        "limit": f"How many lines to return at most (default and maximum {READ_MAX_LINES}).",
    },
)
def read_file(ctx: ToolContext, path: str, offset: int = 1, limit: int = READ_MAX_LINES) -> Output:
    """Read a text file and return its lines numbered like `cat -n`.

    Long files are returned a page at a time; the result says how to read the next page.
    """
    target = confine(ctx.workspace, path)
    shown = display_path(ctx.workspace, target)
    if target.is_dir():
        raise ToolError(f"{shown} is a directory; use list_dir to see what it holds.")
    if offset < 1 or limit < 1:
        raise ToolError("offset and limit must be at least 1.")
    limit = min(limit, READ_MAX_LINES)
    out: list[str] = []
    used = 0
    number = 0
    more = False
    try:
        with fdio.open_regular(target) as (fd, info):
            size = info.st_size
            if b"\0" in os.pread(fd, _SNIFF_BYTES, 0):
                raise ToolError(f"{shown} is a binary file ({size:,} bytes); its contents are not shown.")
            for number, (text, cut_short) in enumerate(_lines(fd, READ_MAX_LINE_CHARS), start=1):
                if number < offset:
                    continue
                if len(out) >= limit or used >= READ_MAX_BYTES:
                    more = True
                    break
                if cut_short:
                    text = text[:READ_MAX_LINE_CHARS] + f"… [line cut at {READ_MAX_LINE_CHARS} characters]"
                entry = f"{number:6}\t{text}"
                out.append(entry)
                used += len(entry) + 1
    except FileNotFoundError:
        raise ToolError(f"{shown} does not exist.") from None
    except OSError as exc:
        raise _refusal(shown, exc) from None
    if not out:
        if size == 0:
            return Output(f"{shown} is empty.", Facts(lines=0, detail=counted(0, "line")))
        raise ToolError(f"{shown} has {number} lines; offset {offset} is past the end.")
    body = "\n".join(out)
    if more:
        next_line = offset + len(out)
        body += (
            f"\n[{shown}: showed lines {offset}-{next_line - 1}. "
            f"More follows: call read_file with offset={next_line} to continue.]"
        )
    return Output(body, Facts(lines=len(out), detail=counted(len(out), "line")))


def _writes_path(workspace: Path, args: dict[str, Any]) -> Access:
    return Access.writing(workspace_key(workspace, str(args.get("path", "."))))


def _atomic_write(target: Path, data: bytes, shown: str) -> None:
    """Write to a temporary file beside the target, then rename: readers never see half a file."""
    try:
        fdio.replace(target, data)
    except OSError as exc:
        raise _refusal(shown, exc) from None


def _line_count(text: str) -> int:
    return text.count("\n") + (0 if text.endswith("\n") or not text else 1)


@tool(
    wording=Wording("Writing", "Wrote"),
    access=_writes_path,
    journaled=True,
    params={
        "path": "File path, relative to the workspace root. Parent directories are created.",
        "content": "The complete new content of the file.",
    },
)
def write_file(ctx: ToolContext, path: str, content: str) -> Output:
    """Create a file or replace its whole content. Prefer edit_file for changes to an existing file."""
    target = confine(ctx.workspace, path, for_write=True)
    shown = display_path(ctx.workspace, target)
    if target.is_dir():
        raise ToolError(f"{shown} is a directory.")
    existed = target.exists()
    before = _old_text(target) if existed else None
    ctx.before_write(target)
    _atomic_write(target, content.encode("utf-8"), shown)
    verb = "Overwrote" if existed else "Created"
    diff = _unified(shown, before, content) if before is not None else ""
    return Output(f"{verb} {shown}: {_line_count(content)} lines ({len(content.encode()):,} bytes).",
                  Facts(lines=_line_count(content), diff=diff,
                        detail=f"{'overwrote' if existed else 'new file'}, {counted(_line_count(content), 'line')}"))


def _old_text(target: Path) -> str | None:
    """What an overwrite replaces, for its diff: text up to DIFF_MAX_BYTES, else None (no diff)."""
    try:
        found = fdio.read_bytes(target)
    except OSError:
        return None
    if found is None or len(found[0]) > DIFF_MAX_BYTES or b"\0" in found[0][:_SNIFF_BYTES]:
        return None
    return found[0].decode("utf-8", errors="replace")


def _where(text: str, needle: str, limit: int = 10) -> list[int]:
    lines: list[int] = []
    start = 0
    while (found := text.find(needle, start)) != -1 and len(lines) < limit:
        lines.append(text.count("\n", 0, found) + 1)
        start = found + 1
    return lines


def _unified(shown: str, before: str, after: str) -> str:
    """The whole diff, as the person's view shows it (the model's copy is capped: ``_diff``)."""
    return "\n".join(difflib.unified_diff(
        before.splitlines(), after.splitlines(), f"a/{shown}", f"b/{shown}", n=2, lineterm=""
    ))


def _diff(whole: str, max_lines: int = 60) -> str:
    lines = whole.split("\n") if whole else []
    if len(lines) > max_lines:
        added = sum(1 for line in lines[2:] if line.startswith("+"))
        removed = sum(1 for line in lines[2:] if line.startswith("-"))
        lines = lines[:max_lines] + [f"… ({len(lines) - max_lines} more diff lines; +{added} -{removed} in all)"]
    return "\n".join(lines)


@tool(
    wording=Wording("Editing", "Edited"),
    access=_writes_path,
    journaled=True,
    params={
        "path": "File path, relative to the workspace root.",
        "old_string": "The exact text to replace, including indentation; it must occur exactly once "
        "unless replace_all is true.",
        "new_string": "The text to put in its place.",
        "replace_all": "Replace every occurrence instead of exactly one.",
    },
)
def edit_file(ctx: ToolContext, path: str, old_string: str, new_string: str, replace_all: bool = False) -> Output:
    """Replace an exact piece of text in a file and return the diff. Read the file first."""
    target = confine(ctx.workspace, path, for_write=True)
    shown = display_path(ctx.workspace, target)
    if not old_string:
        raise ToolError("old_string is empty; give the exact text to replace (or use write_file).")
    if old_string == new_string:
        raise ToolError("old_string and new_string are the same; nothing would change.")
    try:
        found = fdio.read_bytes(target)
    except OSError as exc:
        raise _refusal(shown, exc) from None
    if found is None:
        raise ToolError(f"{shown} does not exist; use write_file to create it.")
    if b"\0" in found[0][:_SNIFF_BYTES]:
        raise ToolError(f"{shown} is a binary file; it cannot be edited as text.")
    before = found[0].decode("utf-8", errors="surrogateescape")
    count = before.count(old_string)
    if count == 0 and "\r\n" in before and "\r\n" not in old_string:
        # The model writes \n; a CRLF file keeps its line endings.
        old_string, new_string = old_string.replace("\n", "\r\n"), new_string.replace("\n", "\r\n")
        count = before.count(old_string)
    if count == 0:
        hint = ""
        squeezed = " ".join(old_string.split())
        if squeezed and squeezed in " ".join(before.split()):
            hint = " Text equal to it apart from whitespace exists: copy the indentation and line breaks exactly."
        raise ToolError(f"old_string was not found in {shown}; the file is unchanged.{hint} Read the file again "
                        "to see its current content.")
    if count > 1 and not replace_all:
        lines = ", ".join(map(str, _where(before, old_string)))
        raise ToolError(f"old_string occurs {count} times in {shown} (lines {lines}); the file is unchanged. "
                        "Include more surrounding text to make it unique, or set replace_all to true.")
    after = before.replace(old_string, new_string) if replace_all else before.replace(old_string, new_string, 1)
    ctx.before_write(target)
    _atomic_write(target, after.encode("utf-8", errors="surrogateescape"), shown)
    replaced = f"{count} occurrences" if replace_all and count > 1 else "1 occurrence"
    whole = _unified(shown, before, after)
    return Output(f"Edited {shown}: replaced {replaced}.\n{_diff(whole)}", Facts(diff=whole))


# What _atomic_write and the undo journal leave behind when the process dies between creating
# their temporary file and renaming it: ".NAME.XXXXXXXX.midstream" / ".NAME.XXXXXXXX.undo".
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(midstream|undo)$")


def remove_stale_temporaries(workspace: Path, *, older_than: float) -> list[Path]:
    """Delete temporary files of interrupted writes last modified before ``older_than`` (a
    ``time.time()``); ``.git`` is not entered and symlinks are not followed. Returns what went."""
    removed = []
    for path in _temporaries(workspace):
        with contextlib.suppress(OSError):
            info = path.lstat()
            if info.st_mtime < older_than and not path.is_symlink():
                path.unlink()
                removed.append(path)
    return removed


def _temporaries(workspace: Path) -> list[Path]:
    """Files named like our temporaries. ripgrep walks in native threads, in a process of its own, so the
    walk (44 ms for this project's 15,000-file checkout) never holds the GIL the session needs; a Python
    walk where rg cannot run."""
    from midstream.tools.search import ripgrep

    if (rg := ripgrep()) is not None:
        try:
            done = subprocess.run([rg, "--files", "--hidden", "--no-ignore", "--no-messages", "--glob", "*.midstream",
                                   "--glob", "*.undo", "--glob", "!.git/", "."], cwd=workspace, capture_output=True,
                                  timeout=60, stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is not None and done.returncode in (0, 1):
            names = done.stdout.decode("utf-8", "surrogateescape").splitlines()
            return [workspace / name for name in names if _TEMPORARY.match(os.path.basename(name))]
    found = []
    for directory, subdirectories, names in os.walk(workspace):
        subdirectories[:] = [d for d in subdirectories if d != ".git"]
        found += [Path(directory, name) for name in names if _TEMPORARY.match(name)]
    return found
