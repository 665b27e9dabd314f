"""The style rules the team agreed on hold: ruff (E, F, I, B, UP) on the tree, mypy on the package."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.process
def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is part of the test extra: pip install '.[test]'")
    done = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


@pytest.mark.process
def test_mypy_is_clean(tmp_path):
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent)) or shutil.which("mypy")
    if mypy is None:
        pytest.fail("mypy is part of the test extra: pip install '.[test]'")
    # mypy cannot follow setuptools' editable import hook, so it checks the package through a tree of
    # links laid out as it installs (pyproject.toml's package-dir), under its one name.
    package = tmp_path / "midstream"
    package.mkdir()
    for name in ("__init__.py", "__main__.py"):
        (package / name).symlink_to(ROOT / "tools" / "_package" / name)
    for name in ("agent.py", "tools", "sandbox", "prompts"):
        (package / name).symlink_to(ROOT / name)
    done = subprocess.run([mypy, "--no-incremental", "-p", "midstream"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MYPYPATH": str(tmp_path)})
    assert done.returncode == 0, done.stdout


def test_runtime_code_never_imports_from_tests():
    runtime = [ROOT / "agent.py", *(ROOT / d for d in ("tools", "sandbox", "prompts"))]
    files = [p for entry in runtime for p in ([entry] if entry.is_file() else entry.rglob("*.py"))]
    offenders = [str(p) for p in files if "from tests" in p.read_text() or "import tests" in p.read_text()]
    assert not offenders


def test_test_modules_import_shared_helpers_from_helpers_not_from_conftest_or_each_other():
    tests = sorted((ROOT / "tests").glob("test_*.py"))
    offenders = [p.name for p in tests if re.search(r"^from tests\.(conftest|test_)", p.read_text(), re.MULTILINE)]
    assert tests and not offenders


def test_the_loop_does_not_import_rich():
    assert "rich" not in (ROOT / "agent.py").read_text()
