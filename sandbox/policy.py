"""Command policy: is a shell command read-only, ordinary, or destructive, and what would it destroy?

The command is read with bash's own grammar (``shellparse``, tree-sitter-bash), so every simple
command at any depth is judged: chains, pipelines, ``if``/``for``/``while``/``case`` bodies, groups,
functions, substitutions, scripts given to ``sh -c`` or fed to a shell on stdin (parsed again),
and commands run by wrappers (``sudo``, ``env``, ``timeout``, ``nice``, ``xargs``, ``find -exec``).
Each one is judged by the first matching row of ``RULES`` (program, subcommand, options -> effect);
a whole command is as dangerous as its most dangerous part. What cannot be read (a syntax error,
``eval``, a command name that is not a literal word) counts as destructive: "cannot tell".
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from midstream.sandbox.commandline import (
    INTERPRETERS,
    PRIVILEGED,
    SHELLS,
    UNKNOWN,
    Call,
    make_call,
    normalise,
    shell_script,
    split_string,
    unwrap,
)
from midstream.sandbox.readers import date_reads_only, git_reads_only, sed_reads_only
from midstream.sandbox.shellparse import Simple, parse_script

__all__ = ["RULES", "Classification", "Finding", "Rule", "Verdict", "UNKNOWN", "analyze", "classify",
           "destructive_targets"]

class Verdict(IntEnum):
    READ_ONLY = 0  # may run beside other reads
    ORDINARY = 1  # changes things; runs alone, in order
    DESTRUCTIVE = 2  # may destroy work: shown with its targets, in a grace window or asked for


@dataclass(frozen=True)
class Classification:
    """A command judged once: the worst verdict, why, and every finding (what would go: ``targets``)."""

    verdict: Verdict
    reasons: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def read_only(self) -> bool:
        return self.verdict is Verdict.READ_ONLY

    @property
    def destructive(self) -> bool:
        return self.verdict is Verdict.DESTRUCTIVE


@dataclass(frozen=True)
class GitWork:
    """A git form that loses uncommitted work or history: listed by ``targets`` from git itself."""

    kind: str  # "tracked" (uncommitted changes of tracked files), "untracked", or "note"
    cwd: Path | None
    pathspecs: tuple[str, ...] = ()
    note: str = ""


Target = str | GitWork  # a path (absolute, or relative to the command's directory) or git's work


@dataclass
class Finding:
    """The verdict on one simple command, where it runs, and what it would destroy."""

    verdict: Verdict
    reason: str
    cwd: Path | None = None
    targets: list[Target] = field(default_factory=list)


# -- predicates the table is written in ------------------------------------------------------------

Predicate = Callable[[Call], bool]


def always(call: Call) -> bool:
    return True


def any_flag(*names: str) -> Predicate:
    wanted = set(names)
    return lambda call: bool(call.flags & wanted)


def no_flag(*names: str) -> Predicate:
    wanted = set(names)
    return lambda call: not call.flags & wanted


def operand_in(*values: str) -> Predicate:
    wanted = set(values)
    return lambda call: bool(set(call.operands) & wanted)


def both(*checks: Predicate) -> Predicate:
    return lambda call: all(check(call) for check in checks)


def _has_glob(call: Call) -> bool:
    return any(set(a) & set("*?[") for a in call.operands if a != UNKNOWN)


def _resolve(call: Call, path: str) -> Path | None:
    if path == UNKNOWN:
        return None
    if os.path.isabs(path):
        return Path(path)
    return call.cwd / path if call.cwd is not None else None


def _exists_file(call: Call, path: str) -> bool:
    resolved = _resolve(call, path)
    return resolved is not None and os.path.lexists(resolved) and not resolved.is_dir()


def _clobbered(call: Call) -> list[str]:
    """Existing files a mv/cp/ln/install would replace."""
    if call.flags & {"n", "--no-clobber", "i", "--interactive", "b", "--backup", "--update=none"}:
        return []
    if call.program == "ln" and not call.flags & {"f", "--force"}:
        return []
    operands = call.operands
    if call.program == "install" and call.flags & {"d", "--directory"}:
        return []
    destination = call.values.get("t") or call.values.get("--target-directory")
    sources = operands if destination else operands[:-1]
    destination = destination or (operands[-1] if len(operands) >= 2 else None)
    if destination is None or (call.program == "ln" and not sources):
        return []
    where = _resolve(call, destination)
    if where is None:
        return []
    if where.is_dir() and not call.flags & {"T", "--no-target-directory"}:
        return [str(where / os.path.basename(s.rstrip("/"))) for s in sources
                if s != UNKNOWN and os.path.lexists(where / os.path.basename(s.rstrip("/")))]
    return [str(where)] if os.path.lexists(where) else []


def _tee_overwrites(call: Call) -> bool:
    return not call.flags & {"a", "--append"} and any(_exists_file(call, p) for p in call.operands
                                                     if not _is_device(p))


def _output(call: Call, short: str, long: str) -> str:
    return call.values.get(short) or call.values.get(long) or UNKNOWN


def _sed_files(call: Call) -> list[str]:
    script_given = call.flags & {"e", "f", "--expression", "--file"}
    return call.operands if script_given else call.operands[1:]


def _git_reset_moves(call: Call) -> bool:
    """`git reset <commit>` with no paths moves the branch: later commits leave it."""
    operands = [a for a in call.operands if a != "HEAD"]
    return len(call.operands) == 1 and bool(operands) and not _exists_file(call, operands[0])


def _git_checkout_discards(call: Call) -> bool:
    if call.flags & {"f", "--force", "p", "--patch"} or "--" in call.args or "." in call.operands:
        return True
    if call.flags & {"b", "B", "--orphan"}:
        return False
    return any(_resolve(call, a) is not None and os.path.lexists(_resolve(call, a) or "") for a in call.operands)


def _git_push_forced(call: Call) -> bool:
    forced = {"f", "--force", "--force-with-lease", "--force-if-includes", "--mirror", "--delete", "d", "--prune"}
    return bool(call.flags & forced) or any(a.startswith(("+", ":")) for a in call.operands[1:])


_PY_WRITES = re.compile(r"shutil\.(rmtree|move|copy)|\bos\.(remove|unlink|rmdir|removedirs|truncate|replace|rename)"
                        r"|\.(unlink|rmdir|write_text|write_bytes|rename|replace)\(|\brmtree\b|\bopen\([^)]*['\"][wx]"
                        r"|\bos\.system|\bsubprocess\b|\bos\.exec|\bos\.popen")
_PERL_WRITES = re.compile(r"\b(unlink|rmdir|rmtree|remove_tree|truncate|rename|system|exec)\b"
                          r"|open\s*\(?[^;]*?['\"]\s*\+?>|`")
_NODE_WRITES = re.compile(r"\b(rmSync|rm|unlink|unlinkSync|rmdir|rmdirSync|writeFile|writeFileSync|truncate|"
                          r"truncateSync|rename|renameSync|copyFileSync|execSync|exec|spawn|spawnSync|execFileSync)\s*\(")
_RUBY_WRITES = re.compile(r"File\.(delete|unlink|write|truncate|rename)|FileUtils\.|Dir\.(rmdir|delete|unlink)"
                          r"|\bsystem\b|\bexec\b|`|IO\.write|File\.open\([^)]*['\"][wa]")
_CODE_WRITES = {"python": _PY_WRITES, "perl": _PERL_WRITES, "node": _NODE_WRITES, "ruby": _RUBY_WRITES}


def _code_writes(call: Call) -> bool:
    pattern = _CODE_WRITES.get(call.program)
    return call.code is not None and pattern is not None and bool(pattern.search(call.code))


@dataclass(frozen=True)
class Rule:
    program: str  # normalised basename of argv[0]
    subcommand: str | None  # git's subcommand (or the first operand); None: any
    when: Predicate  # given the call's options and operands
    verdict: Verdict
    reason: str
    targets: Callable[[Call], Sequence[Target]] | None = None  # what it would destroy (for the countdown)


def _operands(call: Call) -> list[Target]:
    return list(call.operands)


def _after_first(call: Call) -> list[Target]:
    return list(call.operands[1:])


def _git_tracked(call: Call) -> list[Target]:
    paths = tuple(a for a in call.operands if a not in {"HEAD"})
    return [GitWork("tracked", call.cwd, paths)]


def _git_note(text: Callable[[Call], str]) -> Callable[[Call], list[Target]]:
    return lambda call: [GitWork("note", call.cwd, note=text(call))]


_D, _R = Verdict.DESTRUCTIVE, Verdict.READ_ONLY
_GIT_READ_ONLY = ("status", "diff", "log", "show", "blame", "rev-parse", "ls-files", "grep", "describe", "shortlog",
                  "ls-tree", "cat-file", "whatchanged", "name-rev", "merge-base", "rev-list", "show-ref",
                  "for-each-ref", "ls-remote", "version", "help", "count-objects", "check-ignore")
_GIT_BRANCH_LIST = {"a", "r", "v", "l", "--list", "--all", "--show-current", "--remotes", "--verbose", "--contains",
                    "--merged", "--no-merged", "--format", "--sort", "--color", "--no-color"}
_READ_ONLY_PROGRAMS = (
    "ls", "cat", "head", "tail", "wc", "grep", "egrep", "fgrep", "rg", "ag", "pwd", "echo", "printf",
    "which", "type", "file", "stat", "du", "df", "diff", "cmp", "uniq", "cut", "tr",
    "basename", "dirname", "realpath", "readlink", "true", "false", "test", "[", "whoami", "id",
    "uname", "printenv", "nl", "less", "more", "column", "jq", "sha256sum", "md5sum", "cksum",
    "hexdump", "od", "strings", "comm", "join", "paste", "fold", "fmt", "expand", "seq",
    "cd", "pushd", "popd", ":",
)

RULES: tuple[Rule, ...] = (
    # destructive: may destroy work that nothing else holds
    Rule("rm", None, any_flag("r", "R", "f", "--recursive", "--force"), _D, "rm with -r/-f", _operands),
    Rule("rm", None, _has_glob, _D, "rm with a glob", _operands),
    Rule("shred", None, always, _D, "shred", _operands),
    Rule("truncate", None, always, _D, "truncate", _operands),
    Rule("dd", None, always, _D, "dd writes raw bytes",
         lambda c: [a[3:] for a in c.args if a.startswith("of=")]),
    Rule("mkfs", None, always, _D, "mkfs formats a filesystem", _operands),
    *(Rule(p, None, always, _D, f"{p} rewrites a disk", _operands) for p in ("wipefs", "fdisk", "sfdisk", "parted")),
    *(Rule(p, None, any_flag("R", "--recursive"), _D, f"{p} -R", _after_first) for p in ("chmod", "chown", "chgrp")),
    Rule("sed", None, any_flag("i", "--in-place"), _D, "sed -i edits files in place", _sed_files),
    Rule("perl", None, any_flag("i"), _D, "perl -i edits files in place",
         lambda c: c.operands if "e" in c.flags or "E" in c.flags else c.operands[1:]),
    Rule("ruby", None, any_flag("i"), _D, "ruby -i edits files in place", _operands),
    *(Rule(p, None, lambda c: bool(_clobbered(c)), _D, f"{p} over an existing file", _clobbered)
      for p in ("mv", "cp", "ln", "install")),
    Rule("tee", None, _tee_overwrites, _D, "tee over an existing file", _operands),
    Rule("rsync", None, lambda c: any(f.startswith(("--delete", "--remove-source")) for f in c.flags), _D,
         "rsync --delete", lambda c: c.operands[-1:]),
    Rule("curl", None, lambda c: _exists_file(c, _output(c, "o", "--output")), _D, "download over an existing file",
         lambda c: [_output(c, "o", "--output")]),
    Rule("wget", None, lambda c: _exists_file(c, _output(c, "O", "--output-document")), _D,
         "download over an existing file", lambda c: [_output(c, "O", "--output-document")]),
    Rule("sort", None, lambda c: _exists_file(c, _output(c, "o", "--output")), _D, "sort -o over an existing file",
         lambda c: [_output(c, "o", "--output")]),
    Rule("uniq", None, lambda c: len(c.operands) > 1 and _exists_file(c, c.operands[1]), _D,
         "uniq over an existing file", lambda c: c.operands[1:2]),
    Rule("sort", None, any_flag("o", "--output"), Verdict.ORDINARY, "sort -o writes a file"),
    Rule("uniq", None, lambda c: len(c.operands) > 1, Verdict.ORDINARY, "uniq writes a file"),
    *(Rule(p, None, lambda c: c.sub in ("system", "volume", "image", "container", "builder")
           and bool({"prune", "rm"} & set(c.operands)), _D, f"{p} prune deletes data", _operands)
      for p in ("docker", "podman")),
    Rule("kill", None, operand_in("-1"), _D, "kill -1 signals every process"),
    Rule("crontab", None, any_flag("r"), _D, "crontab -r removes the crontab"),
    *(Rule(p, None, always, _D, "shuts the machine down") for p in ("reboot", "shutdown", "halt", "poweroff")),
    *(Rule(p, None, _code_writes, _D, f"{p} code that deletes or overwrites files") for p in _CODE_WRITES),
    Rule("git", "reset", any_flag("--hard", "--merge", "--keep"), _D, "git reset --hard", _git_tracked),
    Rule("git", "reset", _git_reset_moves, _D, "git reset to another commit",
         _git_note(lambda c: f"commits after {c.operands[0]} leave the current branch")),
    Rule("git", "clean", no_flag("n", "--dry-run"), _D, "git clean deletes untracked files",
         lambda c: [GitWork("untracked", c.cwd, tuple(c.operands), "x" if "x" in c.flags else "")]),
    Rule("git", "checkout", _git_checkout_discards, _D, "git checkout discards changes", _git_tracked),
    Rule("git", "restore", lambda c: not c.flags & {"S", "--staged"} or bool(c.flags & {"W", "--worktree"}), _D,
         "git restore discards changes", _git_tracked),
    Rule("git", "switch", any_flag("f", "--force", "--discard-changes", "C", "--force-create"), _D,
         "git switch --force discards changes", lambda c: [GitWork("tracked", c.cwd)]),
    Rule("git", "push", _git_push_forced, _D, "git push --force",
         _git_note(lambda c: f"remote history of {' '.join(c.operands) or 'the upstream branch'} is overwritten")),
    Rule("git", "branch", any_flag("D", "M", "C", "f", "--force"), _D, "git branch -D",
         _git_note(lambda c: f"branch {' '.join(c.operands)} and its unmerged commits")),
    Rule("git", "branch", both(any_flag("d", "--delete"), any_flag("f", "--force")), _D, "git branch -D"),
    Rule("git", "stash", operand_in("drop", "clear"), _D, "git stash drop/clear",
         _git_note(lambda c: "stash entries " + (" ".join(c.operands[1:]) or "(the latest)"))),
    Rule("git", "rebase", no_flag("--continue", "--edit-todo", "--show-current-patch"), _D,
         "git rebase rewrites history", _git_note(lambda c: "commits of the current branch are rewritten")),
    Rule("git", "commit", any_flag("--amend"), _D, "git commit --amend rewrites the last commit",
         _git_note(lambda c: "the last commit is replaced")),
    Rule("git", "reflog", operand_in("expire", "delete"), _D, "git reflog expire",
         _git_note(lambda c: "reflog entries (the way back to lost commits)")),
    Rule("git", "gc", lambda c: any(f.startswith("--prune") for f in c.flags), _D, "git gc --prune",
         _git_note(lambda c: "unreachable commits are pruned")),
    Rule("git", "prune", always, _D, "git gc --prune", _git_note(lambda c: "unreachable commits are pruned")),
    Rule("git", "rm", no_flag("--cached", "n", "--dry-run"), _D, "git rm deletes files", _operands),
    Rule("git", "filter-branch", always, _D, "git filter-branch rewrites history"),
    Rule("git", "submodule", both(operand_in("deinit"), any_flag("f", "--force")), _D,
         "git submodule deinit --force discards submodule work"),
    Rule("git", "update-ref", any_flag("d"), _D, "git update-ref -d deletes a ref"),
    Rule("git", "worktree", both(operand_in("remove"), any_flag("f", "--force")), _D,
         "git worktree remove --force", lambda c: c.operands[1:]),
    # read-only: safe beside other reads
    # read-only: safe beside other reads, and asked nothing in ask mode: only forms that neither run a
    # program nor write a file (sandbox/readers.py)
    *(Rule("git", sub, git_reads_only, _R, "git read") for sub in _GIT_READ_ONLY),
    Rule("git", "", git_reads_only, _R, "git read"),
    Rule("git", "branch", both(git_reads_only, lambda c: not c.operands or c.flags <= _GIT_BRANCH_LIST
                                and bool(c.flags)), _R, "git branch (listing)"),
    Rule("git", "stash", both(git_reads_only, lambda c: c.operands[:1] in (["list"], ["show"])), _R, "git stash list"),
    Rule("git", "remote", both(git_reads_only, lambda c: not c.operands or c.operands[0] in {"-v", "show", "get-url"}),
         _R, "git remote"),
    Rule("find", None, lambda c: not {"-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprintf", "-fls",
                                      "-delete"} & set(c.args), _R, "find"),
    Rule("sed", None, sed_reads_only, _R, "sed"),
    Rule("date", None, date_reads_only, _R, "date"),
    Rule("sort", None, lambda c: not any(f.startswith("--compress-program") for f in c.flags), _R, "sort"),
    Rule("tree", None, no_flag("o"), _R, "tree"),
    Rule("xxd", None, lambda c: len(c.operands) < 2 and "r" not in c.flags, _R, "xxd"),
    *(Rule(p, None, always, _R, p) for p in _READ_ONLY_PROGRAMS),
)

_RULES_BY_PROGRAM: dict[str, list[Rule]] = {}
for _rule in RULES:
    _RULES_BY_PROGRAM.setdefault(_rule.program, []).append(_rule)


# -- reading one simple command --------------------------------------------------------------------

_DELETERS = {"rm", "shred", "unlink", "rmdir", "truncate"}
_SAFE_DEVICES = re.compile(r"/dev/(null|zero|stdout|stderr|stdin|tty|fd/\d+|full|random|urandom|pts/\d+)$")
_MAX_DEPTH = 6


def _is_device(path: str) -> bool:
    return path.startswith("/dev/")


class _Analysis:
    def __init__(self, workspace: Path | None) -> None:
        self.workspace = workspace
        self.findings: list[Finding] = []

    def script(self, text: str, cwd: Path | None, depth: int) -> Path | None:
        if depth > _MAX_DEPTH:
            self.findings.append(Finding(_D, "cannot tell: scripts nested too deep", cwd))
            return cwd
        parsed = parse_script(text)
        if parsed.error:
            self.findings.append(Finding(_D, "cannot tell: the command does not parse", cwd))
        for simple in parsed.commands:
            cwd = self.simple(simple, cwd, depth)
        return cwd

    def add(self, verdict: Verdict, reason: str, cwd: Path | None, targets: Sequence[Target] = ()) -> None:
        self.findings.append(Finding(verdict, reason, cwd, list(targets)))

    def simple(self, simple: Simple, cwd: Path | None, depth: int) -> Path | None:
        for redirect in simple.redirects:
            self.redirect(redirect.operator, redirect.target, cwd)
        if not simple.argv:
            return cwd
        if simple.argv[0] is None:
            self.add(_D, "cannot tell: the command name is not a literal word", cwd)
            return cwd
        argv = [UNKNOWN if word is None else word for word in simple.argv]
        return self.argv(argv, cwd, depth, piped_into=simple.piped_into, stdin_text=simple.stdin_text)

    def redirect(self, operator: str, target: str | None, cwd: Path | None) -> None:
        if ">" not in operator:
            return
        if operator in (">&", "<&") and (target is None or target.isdigit() or target == "-"):
            return
        if target is None:
            self.add(Verdict.ORDINARY, "writes a file", cwd)
        elif _is_device(target):
            if not _SAFE_DEVICES.match(target):
                self.add(_D, f"writes the device {target}", cwd)
        elif ">>" in operator:
            self.add(Verdict.ORDINARY, "appends to a file", cwd)
        else:
            where = Path(target) if os.path.isabs(target) else (cwd / target if cwd is not None else None)
            if where is not None and os.path.lexists(where) and not where.is_dir():
                self.add(_D, f"'>' overwrites the existing file {target}", cwd, [str(where)])
            else:
                self.add(Verdict.ORDINARY, "writes a file", cwd)

    def argv(self, argv: list[str], cwd: Path | None, depth: int, *, piped_into: bool = False,
             stdin_text: str | None = None) -> Path | None:
        wrappers, command = unwrap(argv)
        if (split := split_string(argv)) is not None:  # env -S 'rm -rf x': the string is a command line
            self.add(Verdict.ORDINARY, "env -S runs the command line it is given", cwd)
            self.script(split, cwd, depth + 1)
        if any(w in PRIVILEGED for w in wrappers):
            self.add(_D, "sudo runs as another user", cwd)
        if not command:
            return cwd
        if command[0] == UNKNOWN:
            self.add(_D, "cannot tell: the command name is not a literal word", cwd)
            return cwd
        program, args = normalise(command[0]), command[1:]
        if program in ("cd", "pushd"):
            self.add(_R, program, cwd)
            return _change_directory(cwd, args[0] if args else os.environ.get("HOME", "~"))
        if program == "su":
            self.add(_D, "su runs as another user", cwd)
        if program == "eval":
            self.add(_D, "cannot tell: eval runs text built at run time", cwd)
            return cwd
        if program in ("source", ".") and (not args or args[0] == UNKNOWN or args[0].startswith("/dev/")):
            if stdin_text is not None and args and args[0].startswith("/dev/"):
                self.script(stdin_text, cwd, depth + 1)
            else:
                self.add(_D, f"cannot tell: {program} runs text built at run time", cwd)
            return cwd
        if program == "trap" and args and args[0] not in ("-l", "-p", "-", ""):
            if args[0] == UNKNOWN:
                self.add(_D, "cannot tell: trap runs text built at run time", cwd)
            else:
                self.script(args[0], cwd, depth + 1)  # runs later, in this shell: as if run here
            return cwd
        if "xargs" in wrappers and program in _DELETERS:
            self.add(_D, f"xargs {program} deletes whatever names arrive on its input", cwd)
        for runner in {"xargs", "strace", "ltrace", "valgrind", "script"} & set(wrappers):
            self.add(Verdict.ORDINARY, f"{runner} runs what it is given: never read-only", cwd)
        if program in SHELLS:
            has_c, script = shell_script(args)
            if has_c:
                if script is None or UNKNOWN in script:
                    self.add(_D, f"cannot tell: {program} -c runs text built at run time", cwd)
                else:
                    self.script(script, cwd, depth + 1)
                return cwd
            if script is None and stdin_text is not None:
                self.script(stdin_text, cwd, depth + 1)
                return cwd
            if script is None and piped_into:
                self.add(_D, f"pipes downloaded or generated text into {program}", cwd)
                return cwd
        if program == "find":
            self.find(args, cwd, depth)
        code: str | None = None
        if program in INTERPRETERS:
            code = self.interpreter_code(program, args, stdin_text)
            if code is not None and UNKNOWN in code:
                self.add(_D, f"cannot tell: {program} runs code built at run time", cwd)
                return cwd
            if code is None and piped_into and not _runs_a_file(program, args):
                self.add(_D, f"pipes downloaded or generated text into {os.path.basename(command[0])}", cwd)
                return cwd
        call = make_call(program, args, cwd, code)
        for rule in _RULES_BY_PROGRAM.get(program, ()):
            if (rule.subcommand is None or rule.subcommand == call.sub) and rule.when(call):
                targets = rule.targets(call) if rule.targets and rule.verdict is _D else []
                self.add(rule.verdict, rule.reason, cwd, targets)
                return cwd
        self.add(Verdict.ORDINARY, f"{os.path.basename(command[0])} may change files", cwd)
        return cwd

    def find(self, args: list[str], cwd: Path | None, depth: int) -> None:
        starts = [a for a in args[: next((i for i, a in enumerate(args) if a.startswith(("-", "(", "!"))),
                                          len(args))]] or ["."]
        if "-delete" in args:
            self.add(_D, "find -delete / -exec rm", cwd, [f"{s} (what find matches)" for s in starts])
        index = 0
        while index < len(args):
            if args[index] in ("-exec", "-execdir", "-ok", "-okdir"):
                end = next((j for j in range(index + 1, len(args)) if args[j] in (";", "+")), len(args))
                inner = args[index + 1: end]
                if inner and normalise(inner[0]) in _DELETERS:
                    self.add(_D, "find -delete / -exec rm", cwd, [f"{s} (what find matches)" for s in starts])
                elif inner:
                    self.argv(inner, cwd, depth + 1)
                index = end
            index += 1

    @staticmethod
    def interpreter_code(program: str, args: list[str], stdin_text: str | None) -> str | None:
        flag = {"python": "c", "perl": "e", "node": "e", "ruby": "e"}[program]
        for index, arg in enumerate(args):
            if arg in ("--eval", "--print") or (arg.startswith("-") and not arg.startswith("--")
                                                 and (flag in arg[1:] or (program == "perl" and "E" in arg[1:])
                                                      or (program == "node" and "p" in arg[1:]))):
                return args[index + 1] if index + 1 < len(args) else ""
        if stdin_text is not None and not _runs_a_file(program, args):
            return stdin_text
        return None


def _runs_a_file(program: str, args: list[str]) -> bool:
    return any(not a.startswith("-") and a != UNKNOWN for a in args) or "-m" in args


def _change_directory(here: Path | None, target: str) -> Path | None:
    if here is None or target == UNKNOWN or target.startswith(("-", "~")):
        return None
    return Path(os.path.normpath(os.path.join(here, target)))


def analyze(command: str, workspace: Path | None = None) -> list[Finding]:
    """One finding per simple command (and per redirection), in the order the shell meets them."""
    analysis = _Analysis(workspace)
    analysis.script(command, workspace, 0)
    return analysis.findings


def classify(command: str, workspace: Path | None = None) -> Classification:
    """Judge every simple command inside ``command``; the worst one decides."""
    findings = analyze(command, workspace)
    if not findings:
        return Classification(Verdict.READ_ONLY)
    worst = max(f.verdict for f in findings)
    reasons = tuple(dict.fromkeys(f.reason for f in findings if f.verdict == worst and f.reason))
    return Classification(worst, reasons, tuple(findings))


def destructive_targets(command: str, workspace: Path) -> list[str]:
    """What a destructive command would remove or overwrite: see ``sandbox/targets.py``."""
    from midstream.sandbox.targets import describe_targets

    return describe_targets(analyze(command, workspace), workspace)


