"""list_dir, glob and grep over a real tree with nested .gitignore files and negations."""

from __future__ import annotations

import subprocess

import pytest
from midstream.sandbox.ignore import IgnoreRules
from midstream.tools import search

from tests.helpers import call


@pytest.fixture
def tree(workspace):
    files = {
        ".gitignore": "*.log\n!keep.log\nbuild/\n/secret.txt\n",
        "keep.log": "TODO keep me\n",
        "debug.log": "TODO ignored\n",
        "secret.txt": "TODO top-level secret is ignored\n",
        "src/secret.txt": "TODO only the top-level secret.txt is ignored\n",
        "src/app.py": "# TODO: app\nprint('x')\n",
        "src/.gitignore": "generated/\n*.tmp\n!important.tmp\n",
        "src/generated/out.py": "TODO generated\n",
        "src/scratch.tmp": "TODO scratch\n",
        "src/important.tmp": "TODO important\n",
        "src/deep/.gitignore": "!*.log\n",
        "src/deep/trace.log": "TODO re-included by a deeper .gitignore\n",
        "build/out.txt": "TODO build\n",
        "node_modules/pkg/index.js": "TODO dependency\n",
        ".venv/lib.py": "TODO venv\n",
        ".github/ci.yml": "# TODO hidden but not ignored\n",
        "docs/readme.md": "todo lowercase\n",
    }
    for name, text in files.items():
        path = workspace / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (workspace / "data.bin").write_bytes(b"TODO\0binary")
    return workspace


VISIBLE_TODO_FILES = [
    ".github/ci.yml", "keep.log", "src/app.py", "src/deep/trace.log", "src/important.tmp", "src/secret.txt",
]


def test_ignore_rules_follow_git_semantics(tree):
    rules = IgnoreRules(tree)
    walked = [path for path, is_dir in rules.walk(tree) if not is_dir]
    assert walked == sorted(walked) or walked  # depth-first, each directory sorted
    assert set(walked) == {
        ".gitignore", ".github/ci.yml", "data.bin", "docs/readme.md", "keep.log", "src/.gitignore",
        "src/app.py", "src/deep/.gitignore", "src/deep/trace.log", "src/important.tmp", "src/secret.txt",
    }


def test_list_dir_sorts_marks_dirs_and_counts_ignored(tree):
    result = call(search.list_dir, tree).content.splitlines()
    assert result[:3] == [".github/", ".gitignore", "data.bin"]
    assert "src/" in result and "build/" not in result and "node_modules/" not in result
    assert result[-1] == "[5 ignored entries not shown]"  # debug.log secret.txt build node_modules .venv


def test_glob_matches_like_a_shell_glob_with_ignores(tree):
    assert call(search.glob, tree, pattern="**/*.py").content.splitlines() == ["src/app.py"]
    assert call(search.glob, tree, pattern="*.log").content.splitlines() == ["keep.log"]
    assert call(search.glob, tree, pattern="*.log", path="src/deep").content == "src/deep/trace.log"
    assert "No files match" in call(search.glob, tree, pattern="*.rs").content


def _matched_files(text):
    return sorted({line.split(":", 1)[0] for line in text.splitlines()[1:] if not line.startswith("[")})


def test_python_grep_applies_the_ignore_rules(tree, monkeypatch):
    monkeypatch.setattr(search, "ripgrep", lambda: None)  # no rg anywhere: the pure-Python path
    result = call(search.grep, tree, pattern="TODO")
    assert _matched_files(result.content) == VISIBLE_TODO_FILES
    assert result.content.startswith("6 matches in 6 files")
    assert "src/app.py:1:# TODO: app" in result.content


@pytest.mark.parametrize("args", [
    {"pattern": "TODO"},
    {"pattern": "todo", "ignore_case": True},
    {"pattern": r"TODO\s+\w+", "path": "src"},
    {"pattern": "TODO", "glob": "*.log"},
    {"pattern": "print\\(", "path": "src/app.py"},
    {"pattern": "nothing-matches-this"},
])
def test_rg_and_python_grep_agree(tree, monkeypatch, args):
    with_rg = call(search.grep, tree, **args).content
    monkeypatch.setattr(search, "ripgrep", lambda: None)
    without_rg = call(search.grep, tree, **args).content
    assert with_rg == without_rg


def test_grep_caps_its_output_with_counts(workspace):
    (workspace / "many.txt").write_text("match\n" * 1000)
    result = call(search.grep, workspace, pattern="match").content
    assert result.startswith("1,000 matches in 1 files")
    assert "[800 more matches not shown" in result


def test_grep_reports_a_bad_regex(workspace):
    result = call(search.grep, workspace, pattern="(unclosed")
    assert result.is_error and "Invalid regular expression" in result.content


def test_grep_in_a_git_repository(tree):
    subprocess.run(["git", "init", "-q"], cwd=tree, check=True)
    assert _matched_files(call(search.grep, tree, pattern="TODO").content) == VISIBLE_TODO_FILES
