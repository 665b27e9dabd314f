"""Which forms of a reading program only read: the conservative half of ``policy``'s read-only rules.

A command read as read-only runs without a question in ask mode, so a form that can run a program
or write a file is never read-only, whatever the program is usually for:

- ``sed``: the ``e`` command and the ``e`` flag of ``s`` run the pattern space as a shell command;
  ``w``/``W`` and the ``w`` flag write files; a script from ``-f`` cannot be read here. The script is
  read by a small scanner that understands addresses, ``s`` and ``y`` with any delimiter, labels and
  text arguments; anything it does not understand is not read-only. ``--sandbox`` makes any script
  read-only (GNU sed then refuses e/w/r itself).
- ``git``: ``-c`` and ``--config-env`` set any config (``core.pager``, ``diff.external`` …),
  ``--exec-path`` picks the programs git runs, ``--ext-diff``/``--textconv`` run drivers,
  ``-O``/``--open-files-in-pager`` runs a pager, ``--output`` writes a file, ``--upload-pack`` runs one.
- ``date``: only ``date`` and ``date +FORMAT`` (with ``-u``, ``-R``, ``-I``): an operand or ``-s`` sets the clock.
"""

from __future__ import annotations

import re

from midstream.sandbox.commandline import Call

__all__ = ["date_reads_only", "git_reads_only", "sed_reads_only", "sed_script_reads_only"]

_GIT_RUNS = ("-c", "--config-env", "--exec-path", "--ext-diff", "--textconv", "-O", "--open-files-in-pager",
             "--output", "--upload-pack", "--receive-pack", "--exec", "-p", "--paginate")


def git_reads_only(call: Call) -> bool:
    """No git option (global or the subcommand's) that runs a program or writes a file."""
    for arg in call.args:
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        if name in _GIT_RUNS or (arg.startswith("-O") and not arg.startswith("--")):
            return False
    return True


_DATE_OPTIONS = {"-u", "--utc", "--universal", "-R", "--rfc-email"}


def date_reads_only(call: Call) -> bool:
    """``date`` and ``date +FORMAT``: never a time to set."""
    for arg in call.args:
        if arg.startswith("+") or arg in _DATE_OPTIONS or re.fullmatch(r"-I\w*|--iso-8601(=\w+)?", arg):
            continue
        return False
    return True


def sed_reads_only(call: Call) -> bool:
    """Every script given to this ``sed`` only prints: no e, w or W, no e/w flag of s, no -f."""
    scripts: list[str] = []
    args = call.args
    index = 0
    given = False
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--sandbox":
            return True
        if arg == "--":
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name == "--expression":
                scripts.append(value if eq else (args[index] if index < len(args) else ""))
                index += 0 if eq else 1
                given = True
            elif name in ("--file", "--in-place"):
                return False
            continue
        if arg.startswith("-") and len(arg) > 1:
            for position, letter in enumerate(arg[1:], start=1):
                if letter == "e":
                    rest = arg[position + 1:]
                    scripts.append(rest if rest else (args[index] if index < len(args) else ""))
                    index += 0 if rest else 1
                    given = True
                    break
                if letter in "fi":
                    return False
                if letter == "l":
                    index += 0 if arg[position + 1:] else 1
                    break
            continue
        if not given:
            scripts.append(arg)
            given = True
    return all(sed_script_reads_only(script) for script in scripts)


_ADDRESS = re.compile(r"\s*(\d+(~\d+)?|\$|/(\\.|[^/\\])*/[IM]*|\\(.)(?:(?!\4).|\\.)*\4[IM]*)")
_SIMPLE = set("=dDgGhHlnNpPqQxzF")
_LABELLED = set("btT:")
_TEXT = set("aic")
_FILE_READ = set("rR")


def _address(script: str, at: int) -> int:
    match = _ADDRESS.match(script, at)
    if not match:
        return at
    at = match.end()
    if script[at:at + 1] == ",":
        at += 1
        plus = re.match(r"\s*[+~]\d+", script[at:])
        at = at + plus.end() if plus else _address(script, at)
    return at


def _delimited(script: str, at: int, parts: int) -> int | None:
    """Past ``parts`` fields delimited by the character at ``at`` (s/a/b/ has 2), or None."""
    if at >= len(script) or script[at] in "\n\\":
        return None
    delimiter = script[at]
    at += 1
    for _ in range(parts):
        while at < len(script) and script[at] != delimiter:
            at += 2 if script[at] == "\\" else 1
        if at >= len(script):
            return None
        at += 1
    return at


def sed_script_reads_only(script: str) -> bool:
    """True only when the scanner understands every command of ``script`` and none runs or writes."""
    at = 0
    while at < len(script):
        while at < len(script) and script[at] in " \t\n;{}":
            at += 1
        if at >= len(script):
            return True
        if script[at] == "#":
            end = script.find("\n", at)
            at = len(script) if end < 0 else end
            continue
        at = _address(script, at)
        while at < len(script) and script[at] in " \t!":
            at += 1
        if at >= len(script):
            return False
        command = script[at]
        at += 1
        if command in "{}":
            continue
        if command in _SIMPLE:
            while at < len(script) and script[at] in " \t0123456789":  # q5, l 70
                at += 1
        elif command in _LABELLED or command in _TEXT or command in _FILE_READ:
            end = script.find("\n", at) if command in _TEXT else min(
                [i for i in (script.find(";", at), script.find("\n", at)) if i >= 0] or [len(script)])
            at = len(script) if end < 0 else end
        elif command in "sy":
            past = _delimited(script, at, 2)
            if past is None:
                return False
            at = past
            if command == "s":
                flags = re.match(r"[gpiImM0-9]*", script[at:])
                at += flags.end() if flags else 0
                if at < len(script) and script[at] in "ew":
                    return False
        else:
            return False  # e, w, W, and whatever this scanner does not know
        while at < len(script) and script[at] in " \t":
            at += 1
        if at < len(script) and script[at] not in ";\n}":
            return False
    return True
