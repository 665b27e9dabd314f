"""Command policy: is a shell command read-only, ordinary, or destructive, and what would it destroy?

The command is split into simple commands with ``shlex`` (quotes respected; ``;``, ``&&``, ``||``,
``|``, ``&``, ``(``, ``)`` as separators), and ``bash -c '…'``, ``$(…)`` and backticks are parsed
recursively, so a destructive command inside a chain, a pipeline, a subshell or a quoted script is
still found. Wrappers (``sudo``, ``env``, ``xargs``, ``time``, ``nice`` …) are unwrapped. Each simple
command is judged by the first matching row of ``RULES``; a whole command is as dangerous as its most
dangerous part. What cannot be parsed (unbalanced quotes) is treated as ordinary, never read-only.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

__all__ = ["RULES", "Classification", "Verdict", "classify", "destructive_targets", "split_commands"]


class Verdict(IntEnum):
    READ_ONLY = 0  # may run beside other reads
    ORDINARY = 1  # changes things; runs alone, in order
    DESTRUCTIVE = 2  # may destroy work: shown with its targets, in a grace window or asked for


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    reasons: tuple[str, ...] = ()

    @property
    def read_only(self) -> bool:
        return self.verdict is Verdict.READ_ONLY

    @property
    def destructive(self) -> bool:
        return self.verdict is Verdict.DESTRUCTIVE


_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "|&", ";;", "\n"}
_PRIVILEGED = {"sudo", "doas"}  # run what follows as another user: destructive whatever it is
_WRAPPERS = {"env", "time", "nice", "nohup", "command", "builtin", "exec", "timeout", "stdbuf", "ionice", "xargs"}
_SHELLS = {"sh", "bash", "zsh", "dash", "ksh"}
_SUBSTITUTION = re.compile(r"\$\(([^()]*(?:\([^()]*\)[^()]*)*)\)|`([^`]*)`")


@dataclass
class _Simple:
    argv: list[str] = field(default_factory=list)
    redirects: list[tuple[str, str]] = field(default_factory=list)  # (operator, target)
    piped_into: bool = False  # stdin comes from the previous command of a pipeline


def _tokens(command: str) -> list[str]:
    lexer = shlex.shlex(command.replace("\n", " ; "), posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def split_commands(command: str, depth: int = 0) -> list[_Simple]:
    """Every simple command in ``command``, nested scripts included. Raises ValueError if unparsable."""
    simples: list[_Simple] = []
    current = _Simple()
    tokens = _tokens(command)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token in _SEPARATORS or set(token) <= set(";&|()") and token:
            if current.argv or current.redirects:
                simples.append(current)
            current = _Simple(piped_into=token in {"|", "|&"})
        elif set(token) <= set("<>&") and token:  # >, >>, <, &>, >& …
            target = tokens[index + 1] if index + 1 < len(tokens) else ""
            current.redirects.append((token, target))
            index += 1
        elif re.fullmatch(r"\d+", token) and index + 1 < len(tokens) and set(tokens[index + 1]) <= set("<>&"):
            pass  # the fd number of "2>"; the redirect itself comes next
        else:
            current.argv.append(token)
        index += 1
    if current.argv or current.redirects:
        simples.append(current)
    if depth < 5:  # scripts hidden in substitutions and in `sh -c`
        nested: list[_Simple] = []
        # Scanned in the raw text: shlex would cut an unquoted `rm -rf x` into separate words.
        for match in _SUBSTITUTION.finditer(command):
            nested += split_commands(match.group(1) or match.group(2) or "", depth + 1)
        for simple in simples:
            argv = _unwrap(simple.argv)
            if argv and os.path.basename(argv[0]) in _SHELLS and "-c" in argv[1:-1]:
                nested += split_commands(argv[argv.index("-c") + 1], depth + 1)
        simples += nested
    return simples


def _unwrap(argv: list[str]) -> list[str]:
    """Strip leading VAR=value assignments and wrapper programs (their options too)."""
    rest = list(argv)
    while rest:
        head = os.path.basename(rest[0])
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", rest[0]):
            rest = rest[1:]
        elif head in _WRAPPERS or head in _PRIVILEGED:
            rest = rest[1:]
            while rest and (rest[0].startswith("-") or re.fullmatch(r"\d+[smhd]?", rest[0])):
                rest = rest[1:]  # wrapper options and timeout's duration
        else:
            break
    return rest


# -- the table ---------------------------------------------------------------------------------------

def _flags(args: list[str]) -> set[str]:
    """Short flags split apart (-rf → r, f) and long flags kept whole."""
    found: set[str] = set()
    for arg in args:
        if arg == "--":
            break
        if arg.startswith("--"):
            found.add(arg.split("=")[0])
        elif arg.startswith("-") and len(arg) > 1:
            found.update(arg[1:])
    return found


def _git_subcommand(args: list[str]) -> tuple[str, list[str]]:
    """Skip git's global options (-C dir, -c k=v, --no-pager …) to find the subcommand."""
    index = 0
    while index < len(args) and args[index].startswith("-"):
        index += 2 if args[index] in {"-C", "-c", "--git-dir", "--work-tree"} else 1
    return (args[index], args[index + 1 :]) if index < len(args) else ("", [])


def _has_glob(args: list[str]) -> bool:
    return any(set(a) & set("*?[") for a in args if not a.startswith("-"))


def _git(sub: str, *, any_of: set[str] | None = None, all_of: set[str] | None = None,
         args_in: set[str] | None = None) -> Callable[[list[str]], bool]:
    def check(args: list[str]) -> bool:
        name, rest = _git_subcommand(args)
        if name != sub:
            return False
        flags = _flags(rest) | {a for a in rest if a.startswith("--")}
        if any_of is not None and not (flags & any_of):
            return False
        if all_of is not None and not all_of <= flags:
            return False
        return args_in is None or bool(set(rest) & args_in)
    return check


def _always(args: list[str]) -> bool:
    return True


@dataclass(frozen=True)
class Rule:
    program: str  # basename of argv[0]; "*" for any
    when: Callable[[list[str]], bool]  # given the arguments after the program
    verdict: Verdict
    reason: str


_GIT_READ_ONLY = {"status", "diff", "log", "show", "blame", "rev-parse", "ls-files", "grep", "describe",
                  "shortlog", "ls-tree", "cat-file", "reflog", "whatchanged", "name-rev", "merge-base"}

_GIT_BRANCH_LIST = {"-a", "-r", "-v", "-vv", "-l", "--list", "--all", "--show-current", "--remotes", "--verbose"}

RULES: tuple[Rule, ...] = (
    # destructive: may destroy work that nothing else holds
    Rule("rm", lambda a: bool(_flags(a) & {"r", "R", "f", "--recursive", "--force"}), Verdict.DESTRUCTIVE,
         "rm with -r/-f"),
    Rule("rm", _has_glob, Verdict.DESTRUCTIVE, "rm with a glob"),
    Rule("git", _git("reset", any_of={"--hard", "--merge", "--keep"}), Verdict.DESTRUCTIVE, "git reset --hard"),
    Rule("git", _git("clean"), Verdict.DESTRUCTIVE, "git clean deletes untracked files"),
    Rule("git", _git("checkout", args_in={"--", ".", "-f", "--force"}), Verdict.DESTRUCTIVE,
         "git checkout discards changes"),
    Rule("git", _git("restore"), Verdict.DESTRUCTIVE, "git restore discards changes"),
    Rule("git", _git("push", any_of={"f", "--force", "--force-with-lease", "--mirror", "--delete", "d"}),
         Verdict.DESTRUCTIVE, "git push --force"),
    Rule("git", _git("branch", any_of={"D", "--delete"}), Verdict.DESTRUCTIVE, "git branch -D"),
    Rule("git", _git("stash", args_in={"drop", "clear"}), Verdict.DESTRUCTIVE, "git stash drop/clear"),
    Rule("find", lambda a: "-delete" in a or any(x in a for x in ("-exec", "-execdir", "-ok"))
         and bool({"rm", "shred", "unlink"} & set(a)), Verdict.DESTRUCTIVE, "find -delete / -exec rm"),
    Rule("dd", _always, Verdict.DESTRUCTIVE, "dd writes raw bytes"),
    Rule("shred", _always, Verdict.DESTRUCTIVE, "shred"),
    Rule("mkfs", _always, Verdict.DESTRUCTIVE, "mkfs formats a filesystem"),
    Rule("chmod", lambda a: bool(_flags(a) & {"R", "--recursive"}), Verdict.DESTRUCTIVE, "chmod -R"),
    Rule("chown", lambda a: bool(_flags(a) & {"R", "--recursive"}), Verdict.DESTRUCTIVE, "chown -R"),
    Rule("truncate", _always, Verdict.DESTRUCTIVE, "truncate"),
    Rule("su", _always, Verdict.DESTRUCTIVE, "su runs as another user"),
    # read-only: safe beside other reads
    Rule("git", lambda a: _git_subcommand(a)[0] in _GIT_READ_ONLY, Verdict.READ_ONLY, "git read"),
    Rule("git", lambda a: _git_subcommand(a)[0] == "branch" and set(_git_subcommand(a)[1]) <= _GIT_BRANCH_LIST,
         Verdict.READ_ONLY, "git branch (listing)"),
    Rule("find", lambda a: not {"-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprintf", "-fls"} & set(a),
         Verdict.READ_ONLY, "find"),
    Rule("sed", lambda a: not any(x.startswith(("-i", "--in-place")) for x in a), Verdict.READ_ONLY, "sed"),
    *(Rule(p, _always, Verdict.READ_ONLY, p) for p in (
        "ls", "cat", "head", "tail", "wc", "grep", "egrep", "fgrep", "rg", "ag", "pwd", "echo", "printf",
        "which", "type", "file", "stat", "du", "df", "tree", "diff", "cmp", "sort", "uniq", "cut", "tr",
        "basename", "dirname", "realpath", "readlink", "true", "false", "test", "[", "date", "whoami", "id",
        "uname", "printenv", "nl", "less", "more", "column", "jq", "sha256sum", "md5sum", "cksum",
        "hexdump", "xxd", "od", "strings", "comm", "join", "paste", "fold", "fmt", "expand", "seq",
        "cd", "pushd", "popd",
    )),
)

_PIPE_TO_SHELL = _SHELLS | {"python", "python3", "perl", "ruby", "node"}


def _judge(simple: _Simple, workspace: Path | None) -> tuple[Verdict, str]:
    argv = _unwrap(simple.argv)
    wrappers = simple.argv[: len(simple.argv) - len(argv)]
    verdict, reason = Verdict.READ_ONLY, ""
    for operator, target in simple.redirects:
        if ">" in operator and target not in {"/dev/null", "/dev/stdout", "/dev/stderr", "&1", "&2", "1", "2"}:
            if ">>" in operator:
                verdict, reason = max(verdict, Verdict.ORDINARY), "appends to a file"
            elif workspace is not None and (workspace / target).exists():
                return Verdict.DESTRUCTIVE, f"'>' overwrites the existing file {target}"
            else:
                verdict, reason = max(verdict, Verdict.ORDINARY), "writes a file"
    if any(os.path.basename(w) in _PRIVILEGED for w in wrappers):
        return Verdict.DESTRUCTIVE, "sudo runs as another user"
    if not argv:
        return verdict, reason
    program = os.path.basename(argv[0])
    if program in {"rm", "shred", "unlink"} and any(os.path.basename(w) == "xargs" for w in wrappers):
        return Verdict.DESTRUCTIVE, f"xargs {program} deletes whatever names arrive on its input"
    reads_stdin_as_code = not any(a.endswith((".py", ".sh")) or a in {"-c", "-m"} for a in argv[1:])
    if simple.piped_into and program in _PIPE_TO_SHELL and reads_stdin_as_code:
        return Verdict.DESTRUCTIVE, f"pipes downloaded or generated text into {program}"
    if program.startswith("mkfs."):
        program = "mkfs"
    for rule in RULES:
        if rule.program == program and rule.when(argv[1:]):
            return max(verdict, rule.verdict), rule.reason if rule.verdict >= verdict else reason
    return max(verdict, Verdict.ORDINARY), reason or f"{program} may change files"


def classify(command: str, workspace: Path | None = None) -> Classification:
    """Judge every simple command inside ``command``; the worst one decides."""
    try:
        simples = split_commands(command)
    except ValueError as exc:  # unbalanced quotes: the shell will complain; we assume it writes
        return Classification(Verdict.ORDINARY, (f"could not parse the command: {exc}",))
    if not simples:
        return Classification(Verdict.READ_ONLY)
    judged = []
    here = workspace  # where the next command runs: `>` over an existing file is judged there
    for simple in simples:
        judged.append(_judge(simple, here))
        argv = _unwrap(simple.argv)
        if here is not None and argv and argv[0] in {"cd", "pushd"}:
            here = _change_directory(here, argv[1] if len(argv) > 1 else "~")
    worst = max(v for v, _ in judged)
    reasons = tuple(r for v, r in judged if v == worst and r)
    return Classification(worst, reasons)


def destructive_targets(command: str, workspace: Path) -> list[str]:
    """What a destructive command would remove or overwrite, resolved inside the workspace.

    Globs are expanded where the command will be when it runs: a ``cd`` earlier in the chain moves
    the base (``cd build && rm -rf *`` lists build's files, not the workspace's); after a ``cd``
    we cannot follow (``cd -``, ``cd $DIR``) targets are shown unresolved rather than guessed.
    Directories are counted file by file so a person sees ``rm -rf build/ → 1,204 files``.
    """
    described: list[str] = []
    try:
        simples = split_commands(command)
    except ValueError:
        return described
    here: Path | None = workspace
    for simple in simples:
        argv = _unwrap(simple.argv)
        if argv and argv[0] in {"cd", "pushd"}:
            here = _change_directory(here, argv[1] if len(argv) > 1 else "~")
            continue
        for operator, target in simple.redirects:
            if operator in {">", "&>", ">|"} and here is not None and (here / target).exists():
                described.append(f"{_describe(workspace, str(here / target))} (overwritten)")
        if not argv:
            continue
        program = os.path.basename(argv[0])
        operands: list[str] = []
        if program in {"rm", "shred", "truncate"}:
            operands = [a for a in argv[1:] if not a.startswith("-")]
        elif program in {"chmod", "chown"}:
            operands = [a for a in argv[2:] if not a.startswith("-")]
        elif program == "git":
            name, _ = _git_subcommand(argv[1:])
            if name in {"clean", "reset", "checkout", "restore"}:
                described.append(f"uncommitted work in {workspace.name} (git {name})")
        for pattern in operands:
            if here is None:
                described.append(f"{pattern} (after a cd that cannot be followed; not resolved)")
            else:
                described += [_describe(workspace, p) for p in _expand(here, pattern)]
    return described


def _change_directory(here: Path | None, target: str) -> Path | None:
    if here is None or target.startswith(("-", "$", "~", "`")) or "$(" in target:
        return None
    return Path(os.path.normpath(os.path.join(here, target)))


def _expand(workspace: Path, pattern: str) -> list[str]:
    full = pattern if os.path.isabs(pattern) else os.path.join(workspace, pattern)
    matches = sorted(glob.glob(os.path.expanduser(full)))
    return matches or [full]


def _describe(workspace: Path, path: str) -> str:
    inside = os.path.normpath(path).startswith(str(workspace) + os.sep)
    shown = os.path.relpath(path, workspace) if inside else path
    if os.path.isdir(path) and not os.path.islink(path):
        count = sum(len(files) for _, _, files in os.walk(path))
        return f"{shown}/ ({count:,} files)"
    if os.path.lexists(path):
        return shown
    return f"{shown} (does not exist)"
