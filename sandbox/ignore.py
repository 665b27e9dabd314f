"""Which files listing and searching skip: nested ``.gitignore`` files plus built-in defaults.

Each ``.gitignore`` is compiled once with ``pathspec.GitIgnoreSpec`` (git's own semantics,
negations included) and applied to paths relative to its own directory; a deeper file overrides
a shallower one, as in git. An ignored directory is not descended into, so nothing below it can
be re-included, again as in git. Reading an ignored file by its explicit path is still allowed:
these rules only shape what listing and searching show.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pathspec


__all__ = ["DEFAULT_IGNORED_DIRS", "IgnoreRules"]

# Never worth listing or searching, whatever .gitignore says.
DEFAULT_IGNORED_DIRS = (
    ".git", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", ".tox", ".nox", ".cache", ".eggs", ".hg", ".svn", ".idea",
)


class IgnoreRules:
    """Ignore decisions for one workspace; compiled .gitignore files are cached per directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}

    def _spec(self, directory: str) -> pathspec.GitIgnoreSpec | None:
        import pathspec  # here, not at import: 40 ms that start-up does not need

        if directory not in self._specs:
            path = self.root / directory / ".gitignore"
            try:  # non-blocking and regular files only: a FIFO named .gitignore must not hang every search
                with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as f:
                    data = f.read() if stat.S_ISREG(os.fstat(f.fileno()).st_mode) else b""
                lines = data.decode("utf-8", "replace").splitlines()
            except OSError:
                lines = []
            self._specs[directory] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._specs[directory]

    def is_ignored(self, relative: str, is_dir: bool) -> bool:
        """Is this workspace-relative path (POSIX separators) ignored?

        Parents are not checked here; ``walk`` never reaches a path below an ignored directory.
        """
        parts = relative.split("/")
        if is_dir and parts[-1] in DEFAULT_IGNORED_DIRS:
            return True
        verdict: bool | None = None
        for depth in range(len(parts)):  # root's .gitignore first, the deepest one last
            spec = self._spec("/".join(parts[:depth]))
            if spec is None:
                continue
            below = "/".join(parts[depth:]) + ("/" if is_dir else "")
            result = spec.check_file(below)
            if result.include is not None:
                verdict = result.include
        return bool(verdict)

    def walk(self, start: Path) -> Iterator[tuple[str, bool]]:
        """Yield ``(relative path, is_dir)`` below ``start`` that are not ignored, sorted, depth first.

        Symlinks are listed but never followed, so a link cannot lead a walk out of the workspace.
        """
        base = start.resolve()
        stack = [base]
        while stack:
            directory = stack.pop()
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                continue
            subdirs = []
            for entry in entries:
                is_dir = entry.is_dir(follow_symlinks=False)
                relative = Path(entry.path).relative_to(self.root).as_posix()
                if self.is_ignored(relative, is_dir):
                    continue
                yield relative, is_dir
                if is_dir:
                    subdirs.append(Path(entry.path))
            stack.extend(reversed(subdirs))

    def count_ignored(self, directory: Path) -> int:
        """How many direct entries of ``directory`` are ignored (for "N ignored entries not shown")."""
        count = 0
        for entry in os.scandir(directory):
            relative = Path(entry.path).relative_to(self.root).as_posix()
            count += self.is_ignored(relative, entry.is_dir(follow_symlinks=False))
        return count
