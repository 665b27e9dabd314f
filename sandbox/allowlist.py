"""The strict allowlist read-only mode falls back to when no sandbox can bind the workspace read-only.

Without bubblewrap nothing stops a command from writing, so read-only mode runs only commands this
table can vouch for: simple commands joined by ``|``, ``&&``, ``||`` or ``;``, each a bare program
name from ``PROGRAMS`` followed by options that program lists and by operands. Anything else is
refused, including what the table does not know: redirections of any form, ``$`` and backquotes
(expansions and substitutions), subshells, background jobs, newlines, variable assignments, paths
to programs. Programs that can write or execute through an option or a script (``sed``, ``awk``,
``xargs``, ``env``, interpreters, ``git`` whose repository config can name programs) are not listed.

The command then runs with glob and brace expansion off (``bash -f +B``): otherwise a file named
``-delete`` or a word like ``{-delete,}`` would become an option after this check.

The table is data: one ``Program`` per name, with its allowed short letters (and those that take a
value), long options, and how many operands it may have (``uniq IN OUT`` writes OUT).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

__all__ = ["PROGRAMS", "Program", "allowed", "why_not"]


@dataclass(frozen=True)
class Program:
    """What one program may be given: ``any_option`` only for programs with no writing option."""

    short: str = ""  # flag letters, e.g. "nbAE"
    short_value: str = ""  # letters that take a value (-n 5, -n5)
    long: frozenset[str] = frozenset()  # long option names, without "--"
    words: frozenset[str] = frozenset()  # single-dash words (find's -name, -type ...)
    max_operands: int | None = None
    any_option: bool = False
    numeric: bool = False  # head -20


def _long(*names: str) -> frozenset[str]:
    return frozenset(names)


PROGRAMS: dict[str, Program] = {
    # Readers of files and of the system, none with an option that writes or runs anything.
    "cat": Program(short="nbAETvseu", long=_long("number", "number-nonblank", "show-all", "show-ends",
                                                   "show-tabs", "squeeze-blank", "show-nonprinting")),
    "head": Program(short="qvz", short_value="nc", long=_long("lines", "bytes", "quiet", "verbose"), numeric=True),
    "tail": Program(short="qvz", short_value="nc", long=_long("lines", "bytes", "quiet", "verbose"), numeric=True),
    "wc": Program(short="lwcmL", long=_long("lines", "words", "bytes", "chars", "max-line-length")),
    "ls": Program(any_option=True),
    "tree": Program(short="adfFlsghDpuCnrtxJ", short_value="LIP", long=_long("dirsfirst", "noreport", "gitignore")),
    "grep": Program(any_option=True), "egrep": Program(any_option=True), "fgrep": Program(any_option=True),
    "rg": Program(short="iSsFwxvnNlcLHuz.", short_value="egtTABCmM", long=_long(
        "ignore-case", "smart-case", "case-sensitive", "fixed-strings", "word-regexp", "line-regexp", "invert-match",
        "line-number", "no-line-number", "files-with-matches", "count", "follow", "hidden", "no-ignore",
        "glob", "type", "type-not", "files", "context", "before-context", "after-context", "max-count",
        "max-depth", "regexp", "json", "no-heading", "heading", "with-filename", "color", "sort",
        "multiline", "only-matching", "column", "vimgrep", "unrestricted", "text", "count-matches")),
    "find": Program(words=frozenset({
        "-name", "-iname", "-path", "-ipath", "-wholename", "-type", "-maxdepth", "-mindepth", "-size",
        "-mtime", "-mmin", "-atime", "-ctime", "-newer", "-empty", "-print", "-print0", "-not", "-o", "-a",
        "-and", "-or", "-regex", "-iregex", "-L", "-H", "-P", "-prune", "-perm", "-user", "-group", "-links",
        "-readable", "-writable", "-executable", "-true", "-false", "-xtype", "-depth", "-samefile", "-inum",
        "-lname", "-ilname", "-uid", "-gid", "-nouser", "-nogroup", "-xdev", "-mount",
    })),
    "stat": Program(short="Lft", short_value="c", long=_long("dereference", "format", "terse", "printf")),
    "file": Program(short="bLNizkp", long=_long("brief", "mime", "mime-type", "dereference")),
    "du": Program(short="ahsckmbxLl0", short_value="d", long=_long("max-depth", "summarize", "human-readable",
                                                                    "apparent-size", "total")),
    "df": Program(short="hHTiPal", long=_long("human-readable", "inodes", "print-type")),
    "diff": Program(short="uqrNwbBiatsy", short_value="UCx", long=_long(
        "unified", "brief", "recursive", "new-file", "ignore-all-space", "ignore-space-change", "ignore-blank-lines",
        "ignore-case", "text", "side-by-side", "color", "exclude", "stat")),
    "cmp": Program(short="bls", short_value="in"),
    "sort": Program(short="bdfghiMnrRsuVz", short_value="ktS", long=_long(
        "numeric-sort", "reverse", "unique", "key", "field-separator", "ignore-case", "human-numeric-sort",
        "version-sort", "stable", "check"), max_operands=None),
    "uniq": Program(short="cdDiuz", short_value="fsw", long=_long("count", "repeated", "unique", "ignore-case"),
                    max_operands=1),  # a second operand is a file uniq writes
    "cut": Program(short="sz", short_value="bcdf", long=_long("bytes", "characters", "delimiter", "fields",
                                                               "only-delimited", "complement")),
    "nl": Program(short="p", short_value="bfhivwsnd"),
    "tr": Program(short="cdsCt"),
    "basename": Program(short="az", short_value="s"), "dirname": Program(short="z"),
    "realpath": Program(short="emsqLPz", long=_long("relative-to", "no-symlinks")),
    "readlink": Program(short="fenqsvz", long=_long("canonicalize")),
    "md5sum": Program(short="bctwz", long=_long("check", "tag")),
    "sha1sum": Program(short="bctwz", long=_long("check", "tag")),
    "sha256sum": Program(short="bctwz", long=_long("check", "tag")),
    "which": Program(short="a"), "pwd": Program(short="LP"), "echo": Program(short="neE"),
    "true": Program(), "false": Program(), "whoami": Program(), "id": Program(short="ugGnr"),
    "uname": Program(short="asnrvmpio"),
    "date": Program(short="uRI", long=_long("utc", "iso-8601", "rfc-3339"), max_operands=0),  # MMDDhhmm sets the clock
    "printenv": Program(max_operands=0),  # the command's environment is already an allowlist
    "jq": Program(short="rcSjaesMCn", long=_long("raw-output", "compact-output", "sort-keys", "slurp",
                                                   "exit-status", "arg", "argjson", "null-input")),
}

_OPERATORS = frozenset({"|", "&&", "||", ";"})
_NEVER = re.compile(r"[$`\n\r\0]")  # expansions and substitutions; a newline is a command separator


def why_not(command: str) -> str | None:
    """Why ``command`` is outside the allowlist, or None when every part of it is allowed."""
    if _NEVER.search(command):
        return "it contains $, a backquote or a line break (expansions and substitutions are not allowed)"
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.commenters = ""  # bash ends a word at '#' only at its start; never let a comment hide a command
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as exc:
        return f"it cannot be parsed ({exc})"
    if not tokens:
        return "it is empty"
    simple: list[str] = []
    for token in [*tokens, ";"]:
        if token in _OPERATORS:
            if not simple and token != ";":
                return f"'{token}' has no command before it"
            if simple and (problem := _check(simple)):
                return problem
            simple = []
        elif set(token) <= set("();<>|&"):
            return f"'{token}' (redirections, subshells and background jobs) is not allowed"
        else:
            simple.append(token)
    return None


def allowed(command: str) -> bool:
    """Can ``command`` run in read-only mode without a sandbox?"""
    return why_not(command) is None


def _check(words: list[str]) -> str | None:
    name, *rest = words
    program = PROGRAMS.get(name)
    if program is None:
        return f"'{name}' is not on the read-only allowlist"
    operands = 0
    options_done = False
    index = 0
    while index < len(rest):
        word = rest[index]
        index += 1
        if options_done or word == "-" or not word.startswith("-"):
            operands += 1
            continue
        if word == "--":
            options_done = True
        elif program.words:
            if word not in program.words:
                return f"'{name} {word}' is not on the read-only allowlist"
        elif program.any_option:
            continue
        elif program.numeric and word[1:].isdigit():
            continue
        elif word.startswith("--"):
            if word[2:].split("=", 1)[0] not in program.long:
                return f"'{name} {word}' is not on the read-only allowlist"
        else:
            for position, letter in enumerate(word[1:], start=1):
                if letter in program.short_value:
                    if position == len(word) - 1:
                        index += 1  # the value is the next word
                    break
                if letter not in program.short:
                    return f"'{name} -{letter}' is not on the read-only allowlist"
    if program.max_operands is not None and operands > program.max_operands:
        return f"'{name}' with {operands} operands is not on the read-only allowlist"
    return None
