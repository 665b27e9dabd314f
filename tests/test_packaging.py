"""midstream installs under one name: nothing but ``midstream`` lands in site-packages.

The wheel is built from a clean copy of the repository (so nothing is written into the checkout),
inspected, and installed into a fresh virtual environment; the commands then run from a directory
outside the checkout, so the checkout's own folders cannot be what gets imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.helpers import program_env

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parent.parent


def _tracked_copy(destination: Path) -> Path:
    """The files a commit would hold (links kept as links), as a fresh clone would have them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source, target = ROOT / name, destination / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree, not yet committed
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return destination


def _borrow_dependencies(python: Path, folder: Path) -> None:
    """Give a fresh environment our installed dependencies (no network needed), but not our midstream:
    a folder of links to everything in our site-packages except midstream itself, as a path entry."""
    folder.mkdir(exist_ok=True)
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if not entry.name.lower().startswith(("midstream", "__editable__")) and entry.suffix != ".pth":
            (folder / entry.name).symlink_to(entry)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "zz_midstream_test_deps.pth").write_text(f"{folder}\n")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = _tracked_copy(tmp_path_factory.mktemp("checkout"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("midstream-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the wheel installed and our dependencies borrowed."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _borrow_dependencies(python, tmp_path_factory.mktemp("deps"))
    return env_dir


def test_the_wheel_has_one_top_level_name(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["midstream"]
    roots = {name.split("/")[0] for name in names}
    assert {r for r in roots if not r.endswith(".dist-info")} == {"midstream"}
    # Everything the program needs is inside: the loop, the tools and their packages, the prompts.
    for needed in ("midstream/__main__.py", "midstream/agent.py", "midstream/tools/files.py",
                   "midstream/tools/wire/client.py", "midstream/tools/cli/main.py", "midstream/sandbox/policy.py",
                   "midstream/prompts/system.md", "midstream/tools/web/page.html", "midstream/tools/web/server.py"):
        assert needed in names
    assert not any(n.startswith("midstream/tools/_package") or "/tests/" in n for n in names)


@pytest.mark.parametrize("name", ["tools", "sandbox", "prompts", "agent"])
def test_generic_names_are_not_importable(fresh_env: Path, tmp_path: Path, name: str):
    done = subprocess.run([str(fresh_env / "bin" / "python"), "-c", f"import {name}"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert f"ModuleNotFoundError: No module named '{name}'" in done.stderr


def test_the_package_imports_under_its_name(fresh_env: Path, tmp_path: Path):
    code = "import midstream.agent, midstream.tools.files, midstream.sandbox.policy, midstream.prompts; print('ok')"
    done = subprocess.run([str(fresh_env / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("how", ["script", "module"])
def test_version_from_the_package_metadata(fresh_env: Path, tmp_path: Path, how: str):
    command = [str(fresh_env / "bin" / "midstream")] if how == "script" else [
        str(fresh_env / "bin" / "python"), "-m", "midstream"]
    done = subprocess.run([*command, "--version"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "midstream 0.1.0"


def test_the_demo_runs_from_the_installed_wheel(fresh_env: Path, tmp_path: Path):
    home = tmp_path / "home"
    env = program_env(HOME=str(home), XDG_STATE_HOME=str(home / "state"), XDG_CONFIG_HOME=str(home / "config"))
    done = subprocess.run([str(fresh_env / "bin" / "midstream"), "--demo"], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "demo finished: calc.py fixed" in done.stdout + done.stderr


def test_an_editable_install_works_the_same(tmp_path: Path):
    source = _tracked_copy(tmp_path / "checkout")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(source)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _borrow_dependencies(python, tmp_path / "deps")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in ([str(env_dir / "bin" / "midstream")], [str(python), "-m", "midstream"]):
        done = subprocess.run([*command, "--version"], cwd=elsewhere, capture_output=True, text=True)
        assert done.stdout.strip() == "midstream 0.1.0", done.stderr
    # The editable hook maps only `midstream`, and to the checkout's files.
    done = subprocess.run([str(python), "-c", "import midstream.agent as a; print(a.__file__); import tools"],
                          cwd=elsewhere, capture_output=True, text=True)
    assert done.stdout.strip().startswith(str(source)) and "No module named 'tools'" in done.stderr
