"""Shell commands read with bash's real grammar (tree-sitter-bash): every simple command at any depth.

``simple_commands(text)`` walks the whole syntax tree: lists, pipelines, ``if``/``for``/``while``/
``case`` bodies, ``{ …; }`` and ``( … )`` groups, function bodies, command and process substitutions
(also inside double quotes), and redirections on compound commands. Each simple command comes back
with its words evaluated as far as the shell would without running anything: quotes removed,
``~``/``~user`` and ``$VAR``/``${VAR}`` expanded from the environment and from assignments made
earlier in the script; a word that needs a command substitution or an unknown variable is ``None``.
Text fed to a command on stdin by a here-string or here-document is kept so that a shell or an
interpreter reading it can be judged too. A syntax error is reported, never guessed around.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = ["Redirect", "Script", "Simple", "parse_script"]


@dataclass
class Redirect:
    operator: str  # ">", ">|", ">>", "&>", "<", "2>" is ">" with fd 2 ...
    target: str | None  # the evaluated destination; None when it cannot be known without running


@dataclass
class Simple:
    """One simple command: argv[0] is the program (None: not a literal word)."""

    argv: list[str | None] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)
    piped_into: bool = False  # stdin comes from the previous command of a pipeline
    stdin_text: str | None = None  # a here-string or here-document's text


@dataclass
class Script:
    commands: list[Simple]
    error: bool  # the grammar could not read part of it: nothing about it can be trusted


@lru_cache(maxsize=1)
def _parser() -> Any:
    import tree_sitter_bash
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_bash.language()))


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_script(text: str, env: Mapping[str, str] | None = None) -> Script:
    """Every simple command in ``text``, in the order the shell meets them."""
    tree = _parser().parse(text.encode("utf-8", "surrogateescape"))
    walker = _Walker(dict(os.environ if env is None else env))
    walker.visit(tree.root_node)
    return Script(walker.commands, tree.root_node.has_error)


class _Walker:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.commands: list[Simple] = []
        self._tail_redirects: dict[int, list[Any]] = {}

    def visit(self, node: Any) -> None:
        kind = node.type
        if kind == "command":
            self._command(node, self._tail_redirects.pop(node.id, []))
            return
        if kind == "redirected_statement":
            body = node.child_by_field_name("body")
            redirects = [c for c in node.children if c.type.endswith("redirect")]
            last = _last_command(body)
            if last is not None and last.type == "command" and body is not None and body.type != "command":
                # `a && b > f`, `a | b > f`: the grammar hangs the redirection on the list; bash gives it to b.
                self._tail_redirects[last.id] = redirects
                self.visit(body)
            elif body is not None and body.type == "command":
                self._command(body, redirects)
            else:  # a compound command redirected as a whole: `{ …; } > f`, `while …; done < f`
                simple = Simple()
                self._redirects(simple, redirects)
                self.commands.append(simple)
                if body is not None:
                    self.visit(body)
            for redirect in redirects:
                for child in redirect.children:
                    if child.type not in ("heredoc_body", "heredoc_start", "heredoc_end"):
                        self.visit(child)  # substitutions in targets; `cat <<EOF | sh` keeps its pipeline here
            return
        if kind == "variable_assignment":
            self._assign(node)
        if kind == "for_statement" and (variable := node.child_by_field_name("variable")) is not None:
            self.env.pop(_text(variable), None)  # the loop variable takes values we do not follow
        if kind == "declaration_command":  # export X=1, declare, local
            for child in node.children:
                if child.type == "variable_assignment":
                    self._assign(child)
        for child in node.children:
            self.visit(child)

    def _assign(self, node: Any) -> None:
        name = node.child_by_field_name("name")
        value = node.child_by_field_name("value")
        if name is None:
            return
        evaluated = self.word(value) if value is not None else ""
        key = _text(name)
        if evaluated is None:
            self.env.pop(key, None)  # unknown from here on
        else:
            self.env[key] = evaluated
        if value is not None:
            self.visit(value)

    def _command(self, node: Any, outer_redirects: list[Any]) -> None:
        simple = Simple(piped_into=_piped_into(node))
        redirects = list(outer_redirects)
        for child in node.children:
            if child.type == "command_name":
                simple.argv.append(self.word(child.children[0]) if child.children else None)
            elif child.type.endswith("redirect"):
                redirects.append(child)
            elif child.type == "variable_assignment":
                pass  # VAR=x cmd: for cmd only
            elif child.is_named and child.type != "comment":
                if node.field_name_for_child(_index(node, child)) == "argument":
                    simple.argv.append(self.word(child))
        self._redirects(simple, redirects)
        self.commands.append(simple)
        for child in node.children:  # substitutions inside arguments run first, as commands of their own
            for grandchild in child.children if child.type == "command_name" else [child]:
                self._substitutions(grandchild)
        for redirect in outer_redirects:
            for child in redirect.children:
                self._substitutions(child)

    def _substitutions(self, node: Any) -> None:
        if node.type in ("command_substitution", "process_substitution"):
            self.visit(node)
            return
        for child in node.children:
            self._substitutions(child)

    def _redirects(self, simple: Simple, nodes: list[Any]) -> None:
        for node in nodes:
            if node.type == "herestring_redirect":
                body = next((c for c in node.children if c.is_named), None)
                simple.stdin_text = self.word(body) if body is not None else ""
                if simple.stdin_text is None:
                    simple.stdin_text = _text(body)  # unknown parts stay as written: still worth reading
            elif node.type == "heredoc_redirect":
                simple.stdin_text = _heredoc_text(node)
                self._redirects(simple, [c for c in node.children if c.type == "file_redirect"])  # `<<EOF > f`
            elif node.type == "file_redirect":
                operator = "".join(_text(c) for c in node.children if not c.is_named)
                destination = node.child_by_field_name("destination")
                target = self.word(destination) if destination is not None else None
                simple.redirects.append(Redirect(operator, target))

    # -- words ------------------------------------------------------------------------------------

    def word(self, node: Any) -> str | None:
        """The word as the shell would pass it (before globbing), or None if that needs running code."""
        kind = node.type
        if kind in ("word", "number"):
            return _tilde(_unescape(_text(node)), self.env)
        if kind == "raw_string":
            return _text(node)[1:-1]
        if kind == "ansi_c_string":
            body = _text(node)[2:-1]
            try:
                return body.encode("latin-1", "backslashreplace").decode("unicode_escape")
            except UnicodeDecodeError:
                return None
        if kind == "string":
            parts = []
            for child in node.children:
                if child.type == '"':
                    continue
                value = _text(child) if child.type == "string_content" else self.word(child)
                if value is None:
                    return None
                parts.append(value)
            return "".join(parts)
        if kind == "simple_expansion":
            name = _text(node)[1:]
            return self.env.get(name)
        if kind == "expansion":
            inner = _text(node)[2:-1]
            return self.env.get(inner) if _NAME.fullmatch(inner) else None
        if kind == "concatenation":
            parts = []
            for child in node.children:
                value = self.word(child)
                if value is None:
                    return None
                parts.append(value)
            joined = "".join(parts)
            first = node.children[0] if node.children else None
            return _tilde(joined, self.env) if first is not None and first.type == "word" else joined
        return None  # command substitution, arithmetic, arrays …


def _text(node: Any) -> str:
    return bytes(node.text).decode("utf-8", "surrogateescape")


def _index(parent: Any, child: Any) -> int:
    for number, candidate in enumerate(parent.children):
        if candidate.id == child.id:
            return number
    return -1


def _heredoc_text(node: Any) -> str:
    """The lines between ``<<EOF`` and ``EOF``, read from the source: the grammar sometimes turns the
    first of them into words of the redirection instead of its body."""
    whole = bytes(node.text)
    end = next((c for c in node.children if c.type == "heredoc_end"), None)
    stop = end.start_byte - node.start_byte if end is not None else len(whole)
    first_newline = whole.find(b"\n")
    if first_newline < 0 or first_newline >= stop:
        return ""
    return whole[first_newline + 1:stop].decode("utf-8", "surrogateescape")


def _last_command(node: Any) -> Any:
    while node is not None and node.type in ("list", "pipeline", "redirected_statement", "negated_command"):
        named = [c for c in node.children if c.is_named and not c.type.endswith("redirect")]
        node = named[-1] if node.type != "redirected_statement" else node.child_by_field_name("body")
        if not named:
            return None
    return node


def _piped_into(node: Any) -> bool:
    parent = node.parent
    if parent is None or parent.type != "pipeline":
        return False
    first = next((c for c in parent.children if c.is_named), None)
    # `cat <<EOF | sh`: the grammar hangs the rest of the pipeline under the here-document.
    under_heredoc = parent.parent is not None and parent.parent.type == "heredoc_redirect"
    return first is None or first.id != node.id or under_heredoc


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text) if "\\" in text else text


def _tilde(word: str, env: Mapping[str, str]) -> str:
    if not word.startswith("~"):
        return word
    head, sep, rest = word.partition("/")
    if head == "~":
        home = env.get("HOME")
        return (home + sep + rest) if home else word
    try:
        return pwd.getpwnam(head[1:]).pw_dir + sep + rest
    except (KeyError, ValueError):
        return word
