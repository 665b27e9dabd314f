"""One simple command as a rule sees it: the program behind its wrappers, options, operands, values.

``unwrap`` strips ``VAR=value`` words and wrapper programs (``sudo``, ``env``, ``timeout -s KILL 5``,
``nice -n 5``, ``xargs -I{}`` …) with their options, so the command they run is judged. ``make_call``
splits the rest by the program's own option syntax: options that take a value (``truncate -s 0``,
``cp -t dir``) never leave that value among the operands, where it would be mistaken for a path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["INTERPRETERS", "PRIVILEGED", "SHELLS", "UNKNOWN", "Call", "make_call", "normalise", "shell_script",
           "split_string", "unwrap"]

UNKNOWN = "\x00?"  # a word whose value needs running code

@dataclass
class Call:
    program: str  # basename, normalised (python3.12 -> python, mkfs.ext4 -> mkfs)
    args: list[str]  # after the program; UNKNOWN for words we cannot evaluate
    cwd: Path | None  # where it runs, when we can follow the cd's before it
    sub: str = ""  # the subcommand (git's after its global options; the first operand otherwise)
    flags: set[str] = field(default_factory=set)  # -rf -> r, f; --long kept whole (after sub for git)
    operands: list[str] = field(default_factory=list)  # after sub for git
    values: dict[str, str] = field(default_factory=dict)  # option -> its value
    code: str | None = None  # an interpreter's program text (-c, -e, or stdin)


# Options that take a value, per program: their value is never an operand (nor a target).
_VALUE_OPTIONS: dict[str, set[str]] = {
    "truncate": {"s", "r", "--size", "--reference"},
    "shred": {"n", "s", "--iterations", "--size", "--random-source"},
    "chmod": {"--reference"}, "chown": {"--reference", "--from"}, "chgrp": {"--reference"},
    "cp": {"t", "S", "--target-directory", "--suffix"}, "mv": {"t", "S", "--target-directory", "--suffix"},
    "ln": {"t", "S", "--target-directory", "--suffix"},
    "install": {"m", "o", "g", "t", "S", "--mode", "--owner", "--group", "--target-directory"},
    "sed": {"e", "f", "l", "--expression", "--file", "--line-length"},
    "sort": {"o", "k", "t", "S", "T", "--output", "--key", "--field-separator", "--buffer-size"},
    "docker": {"H", "--host", "--context", "c", "--config"}, "podman": {"--url", "--connection"},
    "rsync": {"e", "f", "--exclude", "--include", "--filter", "--rsh", "--exclude-from", "--include-from"},
    "git": {"m", "b", "B", "C", "c", "u", "F", "--message", "--author", "--date", "--format", "--pretty"},
    "tee": set(), "rm": set(),
    "kill": {"s", "n", "--signal"},
    "python": {"m", "W", "X", "c"}, "perl": {"e", "E", "M", "I", "m"}, "node": {"e", "p", "r", "--eval",
                                                                                "--print", "--require"},
    "ruby": {"e", "r", "I"},
    "curl": {"o", "--output", "d", "H", "X", "u", "A", "e", "F", "T", "w", "--data", "--header", "--request"},
    "wget": {"O", "--output-document", "o", "a", "P", "U", "--user-agent"},
}


def _parse_options(program: str, args: list[str]) -> tuple[set[str], list[str], dict[str, str]]:
    takes = _VALUE_OPTIONS.get(program, set())
    flags: set[str] = set()
    operands: list[str] = []
    values: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            operands += args[index:]
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            flags.add(name)
            if eq:
                values[name] = value
            elif name in takes and index < len(args):
                values[name] = args[index]
                index += 1
        elif arg.startswith("-") and len(arg) > 1 and not (program == "kill" and arg[1:].isdigit()):
            for position, letter in enumerate(arg[1:], start=1):
                flags.add(letter)
                if letter in takes:
                    rest = arg[position + 1:]
                    if rest:
                        values[letter] = rest
                    elif index < len(args):
                        values[letter] = args[index]
                        index += 1
                    break
        else:
            operands.append(arg)
    return flags, operands, values


_GIT_GLOBAL_VALUE = {"-C", "-c", "--git-dir", "--work-tree", "--namespace"}


def make_call(program: str, args: list[str], cwd: Path | None, code: str | None = None) -> Call:
    call = Call(program, args, cwd, code=code)
    if program == "git":
        index = 0
        while index < len(args) and args[index].startswith("-"):
            index += 2 if args[index] in _GIT_GLOBAL_VALUE else 1
        call.sub = args[index] if index < len(args) else ""
        call.flags, call.operands, call.values = _parse_options("git", args[index + 1:])
    else:
        call.flags, call.operands, call.values = _parse_options(program, args)
        call.sub = call.operands[0] if call.operands else ""
    return call


PRIVILEGED = {"sudo", "doas", "su", "pkexec", "run0"}
# wrapper -> its options that take a value; what follows the options is the command it runs
WRAPPERS: dict[str, set[str]] = {
    "sudo": {"u", "g", "C", "D", "h", "p", "U", "r", "t", "--user", "--group"}, "doas": {"u", "C"},
    "env": {"u", "C", "S", "--unset", "--chdir"}, "timeout": {"s", "k", "--signal", "--kill-after"},
    "nice": {"n", "--adjustment"}, "nohup": set(), "time": {"f", "o"}, "command": set(), "builtin": set(),
    "exec": {"a"}, "stdbuf": {"i", "o", "e"}, "ionice": {"c", "n", "p"}, "setsid": set(), "chronic": set(),
    "xargs": {"I", "n", "P", "d", "L", "s", "a", "E", "--max-args", "--max-procs", "--delimiter", "--arg-file"},
    "watch": {"n", "d", "--interval"}, "unbuffer": set(), "caffeinate": set(), "flock": {"w", "E"},
    "busybox": set(), "chrt": {"p"}, "taskset": set(), "systemd-run": {"u", "p", "--unit", "--property"},
    # tracers run the command they are given (and are never read-only themselves: see policy)
    "strace": {"o", "e", "p", "s", "u", "E", "a", "b", "I", "P", "X", "O", "S"},
    "ltrace": {"o", "e", "p", "s", "u", "n", "a", "A", "D", "F", "l", "L", "x", "w"}, "valgrind": set(),
}
SHELLS = {"sh", "bash", "zsh", "dash", "ksh", "fish"}
INTERPRETERS = {"python", "perl", "node", "ruby"}


def normalise(program: str) -> str:
    name = os.path.basename(program)
    if re.fullmatch(r"python[0-9.]*|pypy[0-9.]*", name):
        return "python"
    if name.startswith("mkfs."):
        return "mkfs"
    return {"nodejs": "node", "perl5": "perl"}.get(name, name)


def unwrap(argv: list[str]) -> tuple[list[str], list[str]]:
    """(wrappers, command): strip VAR=value words and wrapper programs with their options."""
    wrappers: list[str] = []
    rest = list(argv)
    while rest:
        name = os.path.basename(rest[0])
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", rest[0]):
            rest = rest[1:]
            continue
        if name not in WRAPPERS or name == "su":
            break
        wrappers.append(name)
        takes = WRAPPERS[name]
        rest = rest[1:]
        while rest and rest[0].startswith("-") and rest[0] != "-":
            option = rest.pop(0)
            if option == "--":
                break
            letter = option.lstrip("-").split("=")[0]
            long = option.split("=")[0]
            if ("=" not in option and (long in takes or (len(option) == 2 and letter in takes))) and rest:
                rest.pop(0)
        if name == "timeout" and rest:
            rest = rest[1:]  # the duration
        if name == "flock" and rest:
            rest = rest[1:]  # the lock file
        while rest and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", rest[0]) and name in ("env", "sudo"):
            rest = rest[1:]
    return wrappers, rest


def split_string(argv: list[str]) -> str | None:
    """The command line inside ``env -S STRING`` or ``script -c STRING``, which run it as their command."""
    for index, word in enumerate(argv):
        name = os.path.basename(word)
        if name not in ("env", "script"):
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word) or name in WRAPPERS:
                continue
            return None
        letter, long = ("S", "--split-string") if name == "env" else ("c", "--command")
        rest = argv[index + 1:]
        for position, arg in enumerate(rest):
            if arg == f"-{letter}" or arg == long:
                return rest[position + 1] if position + 1 < len(rest) else None
            if arg.startswith(f"-{letter}") or arg.startswith(f"{long}="):
                return arg[2:] if not arg.startswith("--") else arg.partition("=")[2]
            if not arg.startswith("-"):
                break
        return None
    return None


def shell_script(args: list[str]) -> tuple[bool, str | None]:
    """(has a script given with -c, the script); a shell given a file runs that file."""
    for index, arg in enumerate(args):
        if arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]:
            following = [a for a in args[index + 1:] if not a.startswith("-")]
            return True, following[0] if following else ""
        if not arg.startswith("-") and not arg.startswith("+"):
            return False, None
    return False, None
