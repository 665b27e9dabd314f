"""Commands as transactions: real bubblewrap over a real overlay; the change set is what the command did.

Each destroying form below is one a reader of the command's text cannot follow; all of them are
caught by their effect, before anything reaches the workspace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from midstream.sandbox.changeset import ChangeSet, GitView
from midstream.sandbox.isolation import bwrap_works, command_environment, sandboxed
from midstream.sandbox.overlay import overlay_works
from midstream.sandbox.record import UndoRecord
from midstream.sandbox.transaction import Transaction
from midstream.sandbox.undo import undo_record

from tests.helpers import git

pytestmark = [pytest.mark.process,
              pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here (.ci/run installs it)")]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A repository with a committed file, an ignored data/ directory, an untracked .env, and lib/."""
    root = tmp_path / "ws"
    root.mkdir()
    git(root, "init", "-q")
    (root / ".gitignore").write_text("data/\n")
    (root / "tracked.py").write_text("print('committed')\n")
    (root / "lib").mkdir()
    for name in "abc":
        (root / "lib" / f"{name}.py").write_text(f"{name} = 1\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    (root / "data").mkdir()
    for i in range(3):
        (root / "data" / f"f{i}.bin").write_bytes(os.urandom(1000 + i))
    (root / ".env").write_text("SECRET=1\n")
    return root


def tree(root: Path) -> dict[str, tuple[bytes | str, int, int]]:
    """Every path below ``root`` (not .git) with its bytes (or link target), mode and mtime."""
    found = {}
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if d != ".git"]
        for name in subdirs + names:
            path = Path(directory, name)
            info = path.lstat()
            content: bytes | str = os.readlink(path) if path.is_symlink() else (
                path.read_bytes() if path.is_file() else "dir")
            found[str(path.relative_to(root))] = (content, info.st_mode, info.st_mtime_ns)
    return found


def run(ws: Path, command: str, *, apply: UndoRecord | None = None, env: dict[str, str] | None = None,
        between: object = None) -> ChangeSet:
    """Run ``command`` in a transaction over ``ws``; apply it into ``apply`` if given, else discard."""
    with Transaction.begin(ws) as tx:
        with sandboxed(["bash", "-c", command], ws, "bwrap") as (argv, fds):
            subprocess.run(tx.wrap(argv), cwd=ws, env=env or command_environment(), pass_fds=fds,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        if callable(between):
            between()
        changes = tx.changes(GitView(ws))
        if apply is not None:
            tx.apply(apply, command)
    return changes


def lost_paths(changes: ChangeSet) -> set[str]:
    return {c.path for c in changes.losses}


def covers(lost: set[str], wanted: str) -> bool:
    return any(p == wanted or p.startswith(wanted + "/") for p in lost)


def test_the_overlay_works_here(ws: Path) -> None:
    assert overlay_works(ws) == ""


# (command, programs it needs, what it destroys)
DATA_ENV = ("data", ".env")
FORMS = [
    ("env -S 'rm -rf data .env'", [], DATA_ENV),
    ("taskset 1 rm -rf data .env", ["taskset"], DATA_ENV),
    ("awk 'BEGIN{system(\"rm -rf data .env\")}'", ["awk"], DATA_ENV),
    ("python3 -c \"getattr(__import__('shutil'),'rm'+'tree')('data'); __import__('os').remove('.env')\"",
     ["python3"], DATA_ENV),
    ("perl -MFile::Path=remove_tree -e 'remove_tree(\"data\"); unlink \".env\"'", ["perl"], DATA_ENV),
    ("make -f /dev/stdin <<< $'all:\\n\\trm -rf data .env'", ["make"], DATA_ENV),
    ("gdb -batch -ex 'shell rm -rf data .env'", ["gdb"], DATA_ENV),
    ("script -qc 'rm -rf data .env' /dev/null", ["script"], DATA_ENV),
    ("strace -f -o /dev/null rm -rf data .env", ["strace"], DATA_ENV),
    ("coproc rm -rf data .env; wait", [], DATA_ENV),
    ("tar --remove-files -cf /tmp/x.tar data .env", ["tar"], DATA_ENV),
    ("git diff --output=.env; rm -r data", ["git"], DATA_ENV),
    ("find data .env -delete", ["find"], DATA_ENV),
    ("echo data .env | xargs rm -rf", ["xargs"], DATA_ENV),
    ("nice -n 5 rm -rf data .env", ["nice"], DATA_ENV),
    ("ionice -c3 rm -rf data .env", ["ionice"], DATA_ENV),
    ("timeout 10 rm -rf data .env", ["timeout"], DATA_ENV),
    ("stdbuf -o0 rm -rf data .env", ["stdbuf"], DATA_ENV),
    ("nohup rm -rf data .env >/dev/null 2>&1", ["nohup"], DATA_ENV),
    ("setsid -w rm -rf data .env", ["setsid"], DATA_ENV),
    ("flock /tmp/lock rm -rf data .env", ["flock"], DATA_ENV),
    ("eval \"$(printf 'rm -rf %s' 'data .env')\"", [], DATA_ENV),
    ("x=rm; $x -rf data .env", [], DATA_ENV),
    ("\"$(echo rm)\" -rf data .env", [], DATA_ENV),
    ("bash -c 'rm -rf data .env'", [], DATA_ENV),
    ("sh -c \"rm -r -f data .env\"", ["sh"], DATA_ENV),
    ("rm -rf d''ata .e\"\"nv", [], DATA_ENV),
    ("r\\m -rf data .env", [], DATA_ENV),
    ("printf 'rm -rf data .env' | bash", [], DATA_ENV),
    ("bash <<< 'rm -rf data .env'", [], DATA_ENV),
    ("source <(echo 'rm -rf data .env')", [], DATA_ENV),
    ("shred -u .env && rm -r data", ["shred"], DATA_ENV),
    ("truncate -s 0 .env data/*", ["truncate"], DATA_ENV),
    ("dd if=/dev/null of=.env status=none; rm -rf data", ["dd"], DATA_ENV),
    ("cp /dev/null .env; find data -type f -exec rm {} +", ["cp"], DATA_ENV),
    ("mv data .env /tmp/", ["mv"], DATA_ENV),
    ("sed -i d .env data/f0.bin", ["sed"], (".env", "data/f0.bin")),
    ("perl -i -pe '$_=\"\"' .env data/f1.bin", ["perl"], (".env", "data/f1.bin")),
    ("python3 -c \"import os; [os.remove(os.path.join(r,f)) for r,_,fs in os.walk('data') for f in fs]; "
     "open('.env','w')\"", ["python3"], DATA_ENV),
    ("node -e \"require('fs').rmSync('data',{recursive:true}); require('fs').unlinkSync('.env')\"", ["node"],
     DATA_ENV),
    ("tclsh <<< 'file delete -force data .env'", ["tclsh"], DATA_ENV),
    ("ed -s .env <<< $',d\\nw' && rm -r data", ["ed"], DATA_ENV),
    ("git clean -fdqx", ["git"], DATA_ENV),
    ("ln -sf /dev/null .env; rm -rf data", ["ln"], DATA_ENV),
    ("install /dev/null .env; rm -rf data", ["install"], DATA_ENV),
    ("f() { rm -rf \"$@\"; }; f data .env", [], DATA_ENV),
    ("cd data && rm -rf ../data ../.env", [], DATA_ENV),
    ("exec 3>.env; rm -rf data", [], DATA_ENV),
    ("printf '' | tee .env data/f2.bin >/dev/null", ["tee"], (".env", "data/f2.bin")),
    ("chrt -o 0 rm -rf data .env", ["chrt"], DATA_ENV),
    ("vim -es -c 'call delete(\".env\")' -c 'call delete(\"data\", \"rf\")' -c 'qa!'", ["vim"], DATA_ENV),
]


def test_at_least_forty_forms() -> None:
    assert len(FORMS) >= 40


@pytest.mark.parametrize(("command", "needs", "destroys"), FORMS, ids=[f[0][:40] for f in FORMS])
def test_a_destroying_form_is_caught_by_its_effect(ws: Path, command: str, needs: list[str],
                                                     destroys: tuple[str, ...]) -> None:
    missing = [p for p in needs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} is not installed on this machine")
    before = tree(ws)
    changes = run(ws, command)
    assert tree(ws) == before  # nothing reached the workspace: it ran in isolation
    lost = lost_paths(changes)
    for path in destroys:
        assert covers(lost, path), (path, changes.lines())
    described = " ".join(changes.loss_lines())
    assert "ignored: not in git" in described and "untracked: not in git" in described


def test_committed_content_is_what_git_gives_back(ws: Path) -> None:
    changes = run(ws, "rm tracked.py lib/a.py")
    assert {c.path for c in changes.changes} == {"tracked.py", "lib/a.py"}
    assert changes.losses == []  # both come back from git: no countdown needed
    (ws / "tracked.py").write_text("edited, not committed\n")
    changes = run(ws, "rm tracked.py")
    assert [c.why for c in changes.losses] == ["uncommitted changes"]


def test_a_moved_file_is_no_loss(ws: Path) -> None:
    changes = run(ws, "mv .env env.bak && mv data data2")
    assert changes.losses == []
    assert "moves .env to env.bak" in changes.lines()
    assert "moves data/ to data2/" in changes.lines()


def test_a_build_cache_rewritten_does_not_count(ws: Path) -> None:
    (ws / "lib" / "__pycache__").mkdir()
    (ws / "lib" / "__pycache__" / "a.pyc").write_bytes(b"old")
    (ws / "node_modules" / ".cache").mkdir(parents=True)
    (ws / "node_modules" / ".cache" / "x").write_bytes(b"old")
    changes = run(ws, "echo new > lib/__pycache__/a.pyc; echo new > node_modules/.cache/x; mkdir -p .pytest_cache "
                      "&& echo 1 > .pytest_cache/v")
    assert not changes.empty and changes.losses == []
    assert lost_paths(run(ws, "rm -rf lib/__pycache__")) == {"lib/__pycache__"}  # deleting one is still said


# -- the real targets, wherever the shell went ---------------------------------------------------

def test_targets_after_cd_or_cd(ws: Path) -> None:
    changes = run(ws, "cd src/lib 2>/dev/null || cd lib; rm -rf *")
    assert {c.path for c in changes.changes} == {"lib/a.py", "lib/b.py", "lib/c.py"}


def test_targets_through_cdpath(ws: Path) -> None:
    (ws / "deep" / "target").mkdir(parents=True)
    (ws / "deep" / "target" / "x.txt").write_text("x")
    changes = run(ws, f"CDPATH={ws}/deep; cd target >/dev/null && rm -rf *")
    assert [(c.path, c.why) for c in changes.losses] == [("deep/target/x.txt", "untracked: not in git")]


def test_targets_after_pushd(ws: Path) -> None:
    changes = run(ws, "pushd data >/dev/null; rm -f f0.bin; popd >/dev/null; rm -f .env")
    assert lost_paths(changes) == {"data/f0.bin", ".env"}


def test_targets_through_a_symlinked_directory(ws: Path) -> None:
    (ws / "real" / "dir").mkdir(parents=True)
    (ws / "real" / "dir" / "keep.txt").write_text("k")
    (ws / "link").symlink_to("real/dir")
    changes = run(ws, "rm -rf link/*")
    assert lost_paths(changes) == {"real/dir/keep.txt"}


# -- nothing changed, nothing applied ------------------------------------------------------------

def test_a_command_that_changes_nothing_applies_nothing(ws: Path, tmp_path: Path) -> None:
    record = UndoRecord(tmp_path / "store", "s")
    before = tree(ws)
    changes = run(ws, "cat tracked.py; ls -R; git status; python3 -c 'open(\"tracked.py\").read()'", apply=record)
    assert changes.empty
    assert tree(ws) == before  # mtimes too
    assert record.last_turn() is None


# -- applying and undoing ------------------------------------------------------------------------

def test_applied_then_undone_to_the_byte(ws: Path, tmp_path: Path) -> None:
    record = UndoRecord(tmp_path / "store", "s")
    record.begin_turn()
    before = tree(ws)
    run(ws, "rm -rf data .env; echo more >> tracked.py; chmod +x lib/a.py; mkdir -p new/deep && echo n > "
            "new/deep/n; ln -s tracked.py alias; rm lib/b.py && mkdir lib/b.py", apply=record)
    assert not (ws / "data").exists() and (ws / "new" / "deep" / "n").read_text() == "n\n"
    assert os.access(ws / "lib" / "a.py", os.X_OK) and (ws / "lib" / "b.py").is_dir()
    for path in ws.rglob("*"):
        if ".git" not in path.parts:
            assert not [x for x in os.listxattr(path, follow_symlinks=False) if x.startswith("user.overlay")]
    report = undo_record(ws, record)
    assert report.undone, report.lines()
    after = tree(ws)
    assert {k: v[:2] for k, v in after.items()} == {k: v[:2] for k, v in before.items()}
    assert after["data/f0.bin"] == before["data/f0.bin"]  # ignored, back to the byte (and its mtime)


def test_undo_leaves_a_later_edit_and_another_sessions_file(ws: Path, tmp_path: Path) -> None:
    mine, theirs = UndoRecord(tmp_path / "store", "a"), UndoRecord(tmp_path / "store", "b")
    mine.begin_turn()
    run(ws, "echo turn > notes.txt; echo turn >> tracked.py; rm .env", apply=mine)
    theirs.begin_turn()
    run(ws, "echo other > other.txt; rm lib/c.py", apply=theirs)
    with open(ws / "notes.txt", "a") as handle:
        handle.write("the person's line\n")
    report = undo_record(ws, mine)
    assert ("kept (changed since the turn)", "notes.txt") in report.files
    assert (ws / "notes.txt").read_text() == "turn\nthe person's line\n"
    assert (ws / "tracked.py").read_text() == "print('committed')\n"
    assert (ws / ".env").read_text() == "SECRET=1\n"
    assert (ws / "other.txt").read_text() == "other\n" and not (ws / "lib" / "c.py").exists()


def test_two_commands_in_one_turn_undo_together(ws: Path, tmp_path: Path) -> None:
    record = UndoRecord(tmp_path / "store", "s")
    record.begin_turn()
    before = tree(ws)
    run(ws, "mkdir made && echo 1 > made/x && echo 1 > .env", apply=record)
    run(ws, "echo 2 >> made/x; echo 2 > .env; rm -rf data", apply=record)
    assert undo_record(ws, record).undone
    assert {k: v[:2] for k, v in tree(ws).items()} == {k: v[:2] for k, v in before.items()}
    assert not undo_record(ws, record).undone  # nothing left to undo


def test_a_path_changed_while_the_command_ran_is_a_conflict(ws: Path, tmp_path: Path) -> None:
    record = UndoRecord(tmp_path / "store", "s")

    def the_person_edits() -> None:
        (ws / ".env").write_text("SECRET=person\n")

    with Transaction.begin(ws) as tx:
        with sandboxed(["bash", "-c", "echo command > .env; echo c > fresh"], ws, "bwrap") as (argv, fds):
            subprocess.run(tx.wrap(argv), env=command_environment(), pass_fds=fds, check=True)
        the_person_edits()
        tx.changes(GitView(ws))
        applied = tx.apply(record)
    assert (ws / ".env").read_text() == "SECRET=person\n"
    assert [p for p, _ in applied.conflicts] == [".env"]
    assert Path(applied.conflicts[0][1]).read_text() == "command\n"  # both kept
    assert applied.applied == ["fresh"]


def test_a_killed_apply_is_undone_up_to_what_it_applied(ws: Path, tmp_path: Path) -> None:
    """SIGKILL while applying 3,000 files: undo restores exactly the workspace before the command."""
    for i in range(3000):
        (ws / "data" / f"m{i}").write_text(str(i))
    before = tree(ws)
    store = tmp_path / "store"
    script = f"""
import subprocess, sys
from pathlib import Path
from midstream.sandbox.changeset import GitView
from midstream.sandbox.isolation import command_environment, sandboxed
from midstream.sandbox.record import UndoRecord
from midstream.sandbox.transaction import Transaction
ws = Path({str(ws)!r})
record = UndoRecord(Path({str(store)!r}), "s")
with Transaction.begin(ws) as tx:
    with sandboxed(["bash", "-c", "for f in data/m*; do echo x > $f; done; rm .env"], ws, "bwrap") as (argv, fds):
        subprocess.run(tx.wrap(argv), env=command_environment(), pass_fds=fds, check=True)
    tx.changes(GitView(ws))
    print("applying", flush=True)
    tx.apply(record)
"""
    process = subprocess.Popen([os.sys.executable, "-c", script], stdout=subprocess.PIPE, env=os.environ.copy())
    assert process.stdout is not None
    assert process.stdout.readline() == b"applying\n"
    first = ws / "data" / "m0"
    while first.read_text() == "0" and process.poll() is None:
        pass  # the first path is applied: kill it now, half way
    process.kill()
    process.wait()
    process.stdout.close()
    changed = sum(1 for i in range(3000) if (ws / "data" / f"m{i}").read_text() != str(i))
    print("applied before the kill:", changed)
    report = undo_record(ws, UndoRecord(store, "s"))
    assert report.undone or changed == 0
    assert {k: v[:2] for k, v in tree(ws).items()} == {k: v[:2] for k, v in before.items()}


def test_ten_thousand_changed_files_apply_and_undo_correctly(ws: Path, tmp_path: Path) -> None:
    many = ws / "many"
    many.mkdir()
    for i in range(10_000):
        (many / f"f{i}").write_text(f"{i}\n")
    record = UndoRecord(tmp_path / "store", "s")
    record.begin_turn()
    script = "import os\nfor n in os.listdir('many'): open('many/' + n, 'a').write('x')\nos.mkdir('fresh')\n" \
             "for i in range(10000): open(f'fresh/{i}', 'w').write(str(i))"
    changes = run(ws, f"python3 -c \"{script}\"", apply=record)
    assert changes.counts() == {"modified": 10_000, "created": 10_000}
    assert all((many / f"f{i}").read_text() == f"{i}\nx" for i in range(10_000))
    assert (ws / "fresh" / "9999").read_text() == "9999"
    assert undo_record(ws, record).undone
    assert all((many / f"f{i}").read_text() == f"{i}\n" for i in range(10_000)) and not (ws / "fresh").exists()


@pytest.mark.parametrize("when", ["before reading", "during the countdown"])
def test_a_directory_swapped_for_a_link_after_the_command_is_never_written_through(ws: Path, tmp_path: Path,
                                                                                 when: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    record = UndoRecord(tmp_path / "store", "s")

    def swap() -> None:
        shutil.rmtree(ws / "lib")
        (ws / "lib").symlink_to(outside)

    with Transaction.begin(ws) as tx:
        with sandboxed(["bash", "-c", "echo evil > lib/new.py; echo x >> lib/a.py"], ws, "bwrap") as (argv, fds):
            subprocess.run(tx.wrap(argv), env=command_environment(), pass_fds=fds, check=True)
        if when == "before reading":
            swap()
        tx.changes(GitView(ws))
        if when == "during the countdown":
            swap()
        applied = tx.apply(record)
    assert list(outside.iterdir()) == []  # nothing written through the link
    assert (ws / "lib").is_symlink() and not applied.applied
    refused = {p for p, _ in applied.conflicts} | {p for p, _ in applied.failed}
    assert refused == ({"lib"} if when == "before reading" else {"lib/a.py", "lib/new.py"})


def test_a_store_on_another_filesystem_applies_by_copying(ws: Path, tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == ws.stat().st_dev:
        pytest.skip("no second filesystem (/dev/shm) on this machine")
    from midstream.sandbox.overlay import Store

    root = Path(tempfile.mkdtemp(dir=shm))
    try:
        store = Store(ws, root)
        assert not store.same_filesystem
        record = UndoRecord(store.root, "s")
        record.begin_turn()
        before = tree(ws)
        with Transaction.begin(ws, store) as tx:
            with sandboxed(["bash", "-c", "rm -rf data; echo x >> tracked.py; mkdir n && echo 1 > n/one"], ws,
                           "bwrap") as (argv, fds):
                subprocess.run(tx.wrap(argv), env=command_environment(), pass_fds=fds, check=True)
            tx.changes(GitView(ws))
            applied = tx.apply(record)
        assert not applied.failed and not (ws / "data").exists() and (ws / "n" / "one").read_text() == "1\n"
        assert (ws / "tracked.py").read_text() == "print('committed')\nx\n"
        assert undo_record(ws, record).undone
        assert {k: v[:2] for k, v in tree(ws).items()} == {k: v[:2] for k, v in before.items()}
    finally:
        shutil.rmtree(root, ignore_errors=True)
