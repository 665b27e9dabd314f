"""What "always" remembers in ask mode: a program and subcommand only when nothing else can ride on it.

``command_keys`` names each simple command of a command line. A key is ``program subcommand`` when
every option given is on that program's safe list (options that neither run code nor pick a file
of instructions); otherwise it is the whole normalised command, so "always" for ``make test``
never covers ``make test -f /dev/stdin``. Programs whose job is to run what they are given
(shells, interpreters, ``awk``, debuggers, tracers, ``xargs``, ``env -S``, ``make -f``) are never
remembered: every run of them is asked.
"""

from __future__ import annotations

import shlex

from midstream.sandbox.commandline import (
    INTERPRETERS,
    PRIVILEGED,
    SHELLS,
    UNKNOWN,
    make_call,
    normalise,
    split_string,
    unwrap,
)
from midstream.sandbox.shellparse import parse_script

__all__ = ["NEVER", "SAFE_OPTIONS", "command_keys"]

NEVER = (SHELLS | INTERPRETERS | {
    "eval", "source", ".", "exec", "awk", "gawk", "mawk", "nawk", "lua", "php", "Rscript", "julia", "tclsh", "expect",
    "gdb", "lldb", "pdb", "strace", "ltrace", "valgrind", "perf", "bpftrace", "rr", "script", "xargs", "parallel",
})

_SUBCOMMAND_PROGRAMS = {"git", "npm", "yarn", "pnpm", "bun", "cargo", "go", "docker", "podman", "kubectl", "pip",
                        "pip3", "uv", "poetry", "make", "gh", "deno", "dotnet", "mvn", "gradle", "apt", "apt-get",
                        "brew", "npx", "just", "task", "terraform", "helm", "rustup", "conda", "hatch", "tox", "nox"}

# Per program, the options that leave "program subcommand" meaning one thing. Programs that only
# read (ls, cat, grep ...) take any option: none of theirs runs code.
SAFE_OPTIONS: dict[str, frozenset[str]] = {
    "git": frozenset({"--oneline", "--stat", "--short", "s", "b", "--branch", "--porcelain", "n", "--graph",
                      "--decorate", "--all", "a", "v", "--verbose", "--name-only", "--name-status", "--cached",
                      "--staged", "p", "--patch", "q", "--quiet", "--no-color", "--color", "--format", "--pretty",
                      "--list", "l", "r", "--abbrev-commit", "m", "--message", "u", "--untracked-files"}),
    "make": frozenset({"j", "--jobs", "k", "--keep-going", "s", "--silent", "B", "n", "--dry-run",
                       "--no-print-directory"}),
    "cargo": frozenset({"--release", "q", "--quiet", "v", "--verbose", "--all-targets", "--workspace",
                        "--all-features", "--locked", "--offline", "--lib", "--bins", "--tests", "--no-run"}),
    "go": frozenset({"v", "race", "short", "count", "run", "cover"}),
    "npm": frozenset({"s", "--silent", "--if-present"}), "pnpm": frozenset({"--silent"}),
    "yarn": frozenset({"--silent"}), "pytest": frozenset({"q", "v", "x", "--tb", "--lf", "--ff", "k", "s"}),
}
_READERS = frozenset({"ls", "cat", "head", "tail", "wc", "grep", "egrep", "fgrep", "rg", "pwd", "echo", "printf",
                      "which", "type", "file", "stat", "du", "df", "diff", "cmp", "uniq", "cut", "tr", "basename",
                      "dirname", "realpath", "readlink", "true", "false", "test", "[", "whoami", "id", "uname",
                      "printenv", "nl", "column", "jq", "sha256sum", "md5sum", "cksum", "hexdump", "od",
                      "strings", "comm", "join", "paste", "fold", "fmt", "expand", "seq", "cd", "pushd", "popd",
                      ":"})


def _options(program: str, args: list[str]) -> set[str]:
    """Every option of a command as the safe lists name them ("v", "--release"); "--" counts as one."""
    found: set[str] = set()
    for arg in args:
        if arg == "--":  # what follows goes to another program (a test runner): never "safe"
            found.add("--")
            break
        if arg.startswith("--"):
            found.add(arg.split("=", 1)[0])
        elif arg.startswith("-") and len(arg) > 1:
            if program == "go":  # go's flags are single-dash words: -race, -count=1
                found.add(arg[1:].split("=", 1)[0])
            else:
                found.update(letter for letter in arg[1:] if not letter.isdigit())  # -j4
    return found


def command_keys(command: str) -> frozenset[str] | None:
    """The key of every command in ``command`` ("npm test", "git status", or a whole command), or None
    when a part of it cannot be remembered (unreadable, privileged, or a program that runs what it is given)."""
    parsed = parse_script(command)
    if parsed.error:
        return None
    keys: set[str] = set()
    for simple in parsed.commands:
        if not simple.argv:
            continue
        if simple.argv[0] is None or None in simple.argv:
            return None
        words = [str(w) for w in simple.argv]
        wrappers, argv = unwrap(words)
        if not argv or argv[0] == UNKNOWN or set(wrappers) & (PRIVILEGED | NEVER) or split_string(words):
            return None
        program = normalise(argv[0])
        if program in NEVER or (program == "make" and _options("make", argv[1:]) & {"f", "--file", "--makefile",
                                                                                    "E", "--eval"}):
            return None
        if program in _READERS:
            keys.add(program)
            continue
        call = make_call(program, argv[1:], None)
        if program in _SUBCOMMAND_PROGRAMS or program in SAFE_OPTIONS:
            named = call.operands[:2] if call.sub in ("run", "exec", "x", "run-script", "dlx") else [call.sub]
            named = [call.sub] if program == "git" else named
            git_globals = program == "git" and bool(argv[1:]) and argv[1].startswith("-")
            if not git_globals and _options(program, argv[1:]) <= SAFE_OPTIONS.get(program, frozenset()):
                keys.add(" ".join([program, *[n for n in named if n]]))
                continue
        keys.add(shlex.join([program, *argv[1:]]))  # anything else: exactly this command
    return frozenset(keys)
