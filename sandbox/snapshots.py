"""Every turn undoable, shell commands included: workspace snapshots as git trees, and ``/undo``.

Before each tool call that may write, the workspace is snapshotted into a *shadow* git directory
of midstream's own (under the state directory, one per workspace): ``GIT_DIR`` is the shadow,
``GIT_WORK_TREE`` the workspace, ``GIT_INDEX_FILE`` the shadow's own index. The first index is
seeded from the workspace's ``.git/index`` and the shadow borrows the repository's objects
through ``objects/info/alternates``, so a snapshot re-hashes only files whose stat data changed:
``git add -A`` then ``git write-tree``. The person's repository is only ever read: its branches,
index, stash, reflog and ``git status`` cannot change, because no git call here has it as its git
directory. A workspace that is not a repository gets the same shadow without alternates.

Skipped, and said so in every undo report: ignored paths (``.gitignore``, ``info/exclude``, and
dependency/cache directories such as ``node_modules``), untracked files over ``HUGE_BYTES``, and
nested repositories. ``info/attributes`` turns off every filter and line-ending conversion, so
restored files are the bytes that were there. Git keeps only the executable bit of a mode: a
file rewritten in place keeps its permissions; a recreated one gets 0644/0755 under the umask.

The session's record (per turn: the snapshot before its first writing call, after its end, and
whether it was undone) is a small JSON file beside the shadow; ``undo_last_turn`` restores the
files the last turn changed to their state before it, turn by turn, and leaves a note the model
reads with the next message. Every git call goes through ``sandbox/git.py``'s hardened runner.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from midstream.sandbox import fdio
from midstream.sandbox.git import run_git
from midstream.sandbox.ignore import DEFAULT_IGNORED_DIRS

__all__ = ["HUGE_BYTES", "SnapshotStore", "TurnSnapshots", "UndoReport", "undo_last_turn"]

log = logging.getLogger("midstream.snapshots")

HUGE_BYTES = 10 * 1024 * 1024  # untracked files larger than this are left out of snapshots
NEW_BYTES_LIMIT = 1024 * 1024 * 1024  # more new data than this in one snapshot: too big to hold (a home directory?)
_SEED_LIMIT = 512 * 1024 * 1024  # an index bigger than this is not a real one
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
SKIPPED_NOTE = (f"Not covered by undo: ignored paths, untracked files over {HUGE_BYTES // (1024 * 1024)} MB, "
                "nested repositories, git's own state (index, branches, stash) and anything outside the workspace.")


def _state_root() -> Path:
    from midstream.tools.conversation.transcript import state_dir

    return state_dir() / "snapshots"


class SnapshotError(RuntimeError):
    """git could not take or restore a snapshot."""


def _embedded_repositories(workspace: Path) -> set[bytes]:
    """Workspace-relative directories holding a repository of their own (looked for on every snapshot)."""
    from midstream.sandbox.protected import nested_repositories

    return {os.fsencode(path.parent.relative_to(workspace)) for path in nested_repositories(workspace)
            if path.name == ".git"}


class TooLarge(SnapshotError):
    """The workspace holds more new data than a snapshot should copy."""


class SnapshotStore:
    """The shadow git directory of one workspace."""

    def __init__(self, workspace: Path, root: Path | None = None) -> None:
        self.workspace = workspace.resolve()
        digest = hashlib.sha256(str(self.workspace).encode()).hexdigest()[:12]
        self.dir = (root or _state_root()) / f"{self.workspace.name or 'root'}-{digest}"
        self.git_dir = self.dir / "shadow.git"
        self.index = self.dir / "index"
        self._lock = threading.Lock()
        self.skipped: list[str] = []  # untracked files too large for the last snapshot
        self._last: tuple[tuple[int, int], str] | None = None  # (index file's stamp, its tree)

    # -- plumbing ---------------------------------------------------------------------------------

    def _git(self, *args: str, index: Path | None = None, input: bytes | None = None,
             check: bool = True) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "GIT_DIR": str(self.git_dir), "GIT_WORK_TREE": str(self.workspace),
               "GIT_INDEX_FILE": str(index or self.index)}
        settings = ["-c", "core.autocrlf=false", "-c", "core.safecrlf=false", "-c", "advice.addEmbeddedRepo=false",
                    "-c", "submodule.recurse=false", "-c", "status.submoduleSummary=false",
                    "-c", "core.quotePath=false"]
        result = run_git([*settings, *args], self.workspace, env=env, input=input, timeout=300)
        if check and result.returncode != 0:
            raise SnapshotError(f"git {args[0]} failed: {result.stderr.decode(errors='replace').strip()[:500]}")
        return result

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One snapshot or restore at a time, across threads and processes."""
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(self.dir / "lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _person_git_dirs(self) -> tuple[Path, Path] | None:
        """The workspace's own repository, (common dir, git dir): read only, for objects, index, excludes."""
        result = run_git(["rev-parse", "--path-format=absolute", "--git-common-dir", "--git-dir",
                          "--show-toplevel"], self.workspace, timeout=10)
        if result.returncode != 0:
            return None
        common, git_dir, top = result.stdout.decode("utf-8", "surrogateescape").splitlines()[:3]
        if Path(top).resolve() != self.workspace:
            return None  # a subdirectory of a repository: its index paths would not line up
        return Path(common), Path(git_dir)

    def _create(self) -> None:
        """The shadow git directory: our config, attributes and excludes, the repository's objects."""
        self.git_dir.parent.mkdir(parents=True, exist_ok=True)
        run_git(["init", "-q", "--bare", str(self.git_dir)], self.dir, timeout=30)
        for key, value in (("core.bare", "false"), ("core.autocrlf", "false"), ("core.symlinks", "true"),
                           ("core.filemode", "true"), ("gc.auto", "0"), ("core.logAllRefUpdates", "false")):
            run_git(["config", "--file", str(self.git_dir / "config"), key, value], self.dir, timeout=10)
        info = self.git_dir / "info"
        info.mkdir(exist_ok=True)
        # Highest precedence of all attribute files: no filter, no eol or encoding conversion, ever.
        (info / "attributes").write_text("* -text -eol -filter -ident -working-tree-encoding\n")
        excludes = [f"{name}/" for name in DEFAULT_IGNORED_DIRS if name != ".git"]
        dirs = self._person_git_dirs()
        if dirs is not None:
            common, _ = dirs
            with contextlib.suppress(OSError):
                (self.git_dir / "objects" / "info" / "alternates").write_text(f"{common / 'objects'}\n")
            with contextlib.suppress(OSError):
                excludes.append((common / "info" / "exclude").read_text(errors="replace"))
        (info / "exclude").write_text("\n".join(excludes) + "\n")

    def _seed(self) -> None:
        """Start from the person's index: its stat data lets git skip every unchanged file. Then refresh
        it once (entries written in the same second as an index are re-read on every use otherwise)."""
        dirs = self._person_git_dirs()
        if dirs is None:
            return
        person_index = dirs[1] / "index"
        try:
            info = os.stat(person_index, follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_size >= _SEED_LIMIT:
                return
            shutil.copyfile(person_index, self.index)
        except OSError:
            return
        self._git("update-index", "-q", "--refresh", "--ignore-missing", check=False)

    # -- snapshot and restore ---------------------------------------------------------------------

    def take(self) -> str:
        """Snapshot the workspace; returns the tree id (``skipped`` then holds the huge files left out)."""
        with self._locked():
            # We hold the lock every midstream takes first: an index.lock left now is from a killed process.
            (self.dir / "index.lock").unlink(missing_ok=True)
            if not (self.git_dir / "HEAD").exists():
                self._create()
            if not self.index.exists():
                self._seed()
            try:
                return self._take()
            except TooLarge:
                raise
            except SnapshotError:
                # A seeded index git cannot use (split index, another version): start over from empty.
                self.index.unlink(missing_ok=True)
                self._last = None
                return self._take()

    def _take(self) -> str:
        # One pass finds what changed since the last snapshot (new files walked, tracked ones stat'ed);
        # only those are handed to `git add`, so an unchanged workspace costs one stat per file.
        # Two processes side by side: diff-files stats the index's files on threads of its own (ls-files -m
        # would take twice as long), ls-files walks the directories for new files.
        walker = threading.Thread(target=lambda: untracked.append(
            self._git("ls-files", "-z", "--others", "--exclude-standard").stdout))
        untracked: list[bytes] = []
        walker.start()
        try:
            differing = self._git("diff-files", "--name-only", "-z", "--no-ext-diff", "--no-textconv",
                                  "--ignore-submodules=all").stdout
        finally:
            walker.join()
        if not untracked:
            raise SnapshotError("git ls-files did not answer")
        changed: dict[bytes, None] = {}
        huge: list[str] = []
        new_bytes = 0
        entries = [(b"C", n) for n in differing.split(b"\0")] + [(b"?", n) for n in untracked[0].split(b"\0")]
        nested = _embedded_repositories(self.workspace)  # looked for again at every snapshot
        for tag, name in entries:
            if not name:
                continue
            if name.endswith(b"/") or any(name == n or name.startswith(n + b"/") for n in nested):
                # An embedded repository: `git add` would run git inside it, under its own config (its
                # filter drivers, on the host). Left out of snapshots, and out of the fallback's `add .` too.
                nested.add(name.rstrip(b"/"))
                continue
            if tag == b"?":
                with contextlib.suppress(OSError):
                    size = os.lstat(os.path.join(self.workspace, os.fsdecode(name))).st_size
                    if size > HUGE_BYTES:
                        huge.append(os.fsdecode(name))
                        continue
                    new_bytes += size
            changed[name] = None
        if new_bytes > NEW_BYTES_LIMIT:
            raise TooLarge(f"{new_bytes / 2**30:.1f} GB of files are new to the snapshot; add the bulky directories "
                           "to .gitignore to make this workspace undoable")
        self.skipped = huge
        added = None
        if changed and len(changed) <= 2000:  # git matches pathspecs one by one: many are slower than a walk
            added = self._git("--literal-pathspecs", "add", "-A", "--ignore-errors", "--pathspec-from-file=-",
                              "--pathspec-file-nul", input=b"\0".join(changed) + b"\0", check=False)
        if changed and (added is None or added.returncode != 0):  # many files, or one vanished meanwhile
            pathspecs = b"".join(b":(exclude,literal)" + os.fsencode(p) + b"\0" for p in huge)
            pathspecs += b"".join(b":(exclude,literal)" + n + b"\0" for n in sorted(nested))
            added = self._git("add", "-A", "--ignore-errors", "--pathspec-from-file=-", "--pathspec-file-nul",
                              input=b".\0" + pathspecs, check=False)
            if b"fatal:" in added.stderr:  # unreadable files are only errors; this would be a false snapshot
                raise SnapshotError(f"git add failed: {added.stderr.decode(errors='replace').strip()[:300]}")
        stamp = self._stamp()
        if not changed and self._last is not None and self._last[0] == stamp:
            return self._last[1]  # nothing changed and the index is as we left it: the same tree
        tree = self._git("write-tree").stdout.decode().strip()
        self._last = (self._stamp(), tree)
        return tree

    def _stamp(self) -> tuple[int, int]:
        try:
            info = os.stat(self.index)
        except OSError:
            return (0, 0)
        return (info.st_mtime_ns, info.st_size)

    def changes(self, old: str, new: str) -> list[tuple[str, str, str, str]]:
        """(status, path, old mode, new blob) for each file that differs from ``old`` to ``new``."""
        raw = self._git("diff-tree", "-r", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", old, new).stdout
        fields = raw.split(b"\0")
        found = []
        for index in range(0, len(fields) - 1, 2):
            meta, path = fields[index].decode(), fields[index + 1]
            if not meta.startswith(":"):
                continue
            old_mode, new_mode, _old_sha, new_sha, status = meta[1:].split(" ")
            found.append((status[0], os.fsdecode(path), new_mode, new_sha))
        return found

    def restore(self, paths: set[str], tree: str, current: str, since: float = 0.0) -> list[tuple[str, str]]:
        """Put ``paths`` back as they are in ``tree``; returns (what was done, path).

        A file that is not in ``tree`` is removed only if it changed after ``since`` (the turn's start):
        one that is older was there before the turn, merely out of the snapshot (ignored then).
        """
        with self._locked():
            wanted = [c for c in self.changes(current, tree) if c[1] in paths]
            restored: list[tuple[str, str]] = []
            for status, path, _mode, _sha in wanted:  # deletions first: a file may stand where a dir was
                if status == "D":
                    with contextlib.suppress(FileNotFoundError):
                        if os.lstat(self.workspace / path).st_ctime < since:
                            restored.append(("kept (older than the turn)", path))
                            continue
                    self._remove(path)
                    restored.append(("removed", path))
            writes = [c for c in wanted if c[0] != "D" and c[2] != "160000"]
            blobs = self._blobs([sha for _, _, _, sha in writes])
            for status, path, mode, sha in writes:
                self._write(path, mode, blobs[sha])
                restored.append(("restored" if status == "A" else "reverted", path))
            return sorted(restored, key=lambda item: item[1])

    def _blobs(self, shas: list[str]) -> dict[str, bytes]:
        if not shas:
            return {}
        out = self._git("cat-file", "--batch", input="".join(f"{s}\n" for s in shas).encode()).stdout
        blobs: dict[str, bytes] = {}
        position = 0
        while position < len(out):
            header_end = out.index(b"\n", position)
            sha, _kind, size = out[position:header_end].decode().split(" ")
            start = header_end + 1
            blobs[sha] = out[start:start + int(size)]
            position = start + int(size) + 1
        return blobs

    def _inside(self, path: str) -> Path:
        full = self.workspace / path
        parent = Path(os.path.realpath(full.parent))
        if parent != self.workspace and self.workspace not in parent.parents:
            raise SnapshotError(f"refusing to restore {path}: its directory now leads outside the workspace")
        return full

    def _remove(self, path: str) -> None:
        full = self._inside(path)
        with contextlib.suppress(FileNotFoundError):
            if full.is_dir() and not full.is_symlink():
                return  # a directory now stands there; its files are listed one by one
            full.unlink()
        parent = full.parent
        while parent != self.workspace:
            try:
                parent.rmdir()  # only if empty: ignored files the snapshot never held stay
            except OSError:
                break
            parent = parent.parent

    def _write(self, path: str, mode: str, data: bytes) -> None:
        full = self.workspace / path
        self._make_parents(full)
        full = self._inside(path)
        if mode == "120000":
            with contextlib.suppress(FileNotFoundError):
                full.unlink()
            os.symlink(os.fsdecode(data), full)
            return
        executable = mode == "100755"
        if full.is_symlink() or (full.exists() and not full.is_file()):
            if full.is_dir() and not full.is_symlink():
                shutil.rmtree(full)
            else:
                full.unlink()
        if full.exists() and os.lstat(full).st_nlink > 1:
            full.unlink()  # a hard link the turn made to a file elsewhere: never write through it
        if full.exists():  # rewritten in place: the inode, owner and permission bits stay
            fd = os.open(full, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
            current = os.fstat(fd).st_mode
            if bool(current & 0o100) != executable:
                os.fchmod(fd, (current | (0o111 & ~fdio.UMASK)) if executable else (current & ~0o111))
        else:
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o777 if executable else 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    def _make_parents(self, full: Path) -> None:
        missing = []
        parent = full.parent
        while parent != self.workspace and not (parent.is_dir() and not parent.is_symlink()):
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            if directory.is_symlink() or directory.exists():
                directory.unlink()  # a file or a link now stands where the directory was
            directory.mkdir()


# -- turns of one session --------------------------------------------------------------------------

@dataclass
class UndoReport:
    """What ``/undo`` did: the turn it undid and the files it changed back."""

    undone: bool
    message: str
    files: list[tuple[str, str]] = field(default_factory=list)  # (removed | restored | reverted, path)

    def lines(self) -> list[str]:
        return [self.message, *(f"  {what} {path}" for what, path in self.files)]


class TurnSnapshots:
    """The undo record of one session: a snapshot before each writing call, per turn."""

    def __init__(self, workspace: Path, session_id: str | None = None, root: Path | None = None) -> None:
        self.store = SnapshotStore(workspace, root)
        self.session = session_id or ("unsaved-" + secrets.token_hex(4))
        self.path = self.store.dir / "sessions" / f"{self.session}.json"
        self._turn_open = False
        self._mutex = threading.Lock()
        self.unavailable: str | None = None  # why the last snapshot could not be taken
        self._warm = False  # build the index in the background at the next turn

    def _load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {"turns": [], "notes": []}

    def _save(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, self.path)

    def warm(self) -> None:
        """Build the shadow index in the background when the first message is sent, so the first writing
        call does not wait for it (seconds in a large workspace that is not a repository: every file is
        hashed once). Not earlier: at the prompt, a busy CPU widens readline's window for losing Ctrl-C."""
        self._warm = True

    def _start_warming(self) -> None:
        self._warm = False

        def build() -> None:
            with self._mutex, contextlib.suppress(SnapshotError, OSError, subprocess.SubprocessError):
                self.store.take()

        threading.Thread(target=build, name="snapshot-warm", daemon=True).start()

    def begin_turn(self) -> None:
        """A new user message: the next writing call opens a new undoable turn."""
        self._turn_open = False
        if self._warm:
            self._start_warming()

    def before_call(self) -> None:
        """Snapshot now (a tool that may write is about to run). Never fails the call."""
        with self._mutex:
            try:
                tree = self.store.take()
            except (SnapshotError, OSError, subprocess.SubprocessError) as error:
                log.warning("snapshot failed; this call cannot be undone: %s", error)
                self.unavailable = str(error)
                return
            with self.store._locked():
                record = self._load()
                if not self._turn_open or not record["turns"]:
                    record["turns"].append({"before": tree, "after": None, "calls": [], "undone": False,
                                            "started": time.time(), "skipped": self.store.skipped})
                    self._turn_open = True
                record["turns"][-1]["calls"].append(tree)
                self._save(record)

    def end_turn(self) -> None:
        """The turn is over: remember where it left the workspace."""
        if not self._turn_open:
            return
        with self._mutex:
            try:
                tree = self.store.take()
            except (SnapshotError, OSError, subprocess.SubprocessError) as error:
                log.warning("end-of-turn snapshot failed: %s", error)
                return
            with self.store._locked():
                record = self._load()
                if record["turns"]:
                    record["turns"][-1]["after"] = tree
                    self._save(record)
            self._turn_open = False

    def pending_note(self) -> str | None:
        """What the model must be told about undone turns, once; None if nothing."""
        if not self.path.exists():
            return None
        with self.store._locked():
            record = self._load()
            notes = record.get("notes") or []
            if not notes:
                return None
            record["notes"] = []
            self._save(record)
        return "\n".join(notes)

    def undo(self) -> UndoReport:
        """Put the files the last not-yet-undone turn changed back as they were before it."""
        try:
            return self._undo()
        except (SnapshotError, OSError, subprocess.SubprocessError) as error:
            return UndoReport(False, f"Undo failed, nothing was marked undone: {error}")

    def _undo(self) -> UndoReport:
        self._turn_open = False
        with self._mutex:
            now = self.store.take()
            with self.store._locked():
                record = self._load()
            turns = [t for t in record["turns"] if not t["undone"]]
            if not turns:
                why = f" (snapshots failed: {self.unavailable})" if self.unavailable else ""
                return UndoReport(False, f"Nothing to undo: no turn of this session changed the workspace{why}.")
            turn = turns[-1]
            number = record["turns"].index(turn) + 1
            after = turn["after"] or now
            changed = {path for _, path, _, _ in self.store.changes(turn["before"], after)}
            changed -= set(turn.get("skipped", []))  # too large to hold before the turn: left as they are
            files = self.store.restore(changed, turn["before"], now, since=turn.get("started", 0.0) - 1.0)
            with self.store._locked():
                record = self._load()
                record["turns"][number - 1]["undone"] = True
                record["turns"][number - 1]["redo"] = now
                summary = ", ".join(f"{what} {path}" for what, path in files[:50]) or "no files needed changing"
                record.setdefault("notes", []).append(
                    f"[The person undid turn {number} (/undo): every workspace file that turn changed, by file tools "
                    f"and shell commands alike, is back as it was before it ({summary}). Effects outside the "
                    "workspace files (git history, other directories, processes) were not undone. Read files "
                    "again before relying on what you saw in that turn.]")
                self._save(record)
        message = (f"Undid turn {number}: {len(files)} file{'s' if len(files) != 1 else ''} changed back. "
                   + SKIPPED_NOTE)
        return UndoReport(True, message, files)


def undo_last_turn(workspace: Path, session_id: str, root: Path | None = None) -> UndoReport:
    """Undo the last turn of a session in ``workspace`` (for ``/undo`` and ``midstream --undo``)."""
    return TurnSnapshots(workspace, session_id, root).undo()
