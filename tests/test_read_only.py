"""Read-only mode holds whatever the command says: the kernel refuses the write, or the allowlist the command.

Each command below writes or executes while looking like a reader to a text classifier. Run through
the real loop in read-only mode, none of them may change one byte of the workspace (``.git``
included): with bubblewrap because the workspace is bound read-only, without it because none of
them is on the strict allowlist.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from midstream.sandbox.allowlist import allowed
from midstream.sandbox.isolation import bwrap_works
from midstream.tools.testing.scripted_server import ScriptedServer, Text, ToolUse, reply

from tests.helpers import git

SNEAKY = [
    "cat a.txt > copy.txt",
    "cat a.txt >| clobber.txt",
    "cat a.txt >> a.txt",
    "echo x 1> one.txt",
    "ls &> both.txt",
    "ls 2> err.txt",
    "cat <> a.txt",
    "exec 3> fd.txt; echo x >&3",
    "cat a.txt | tee tee.txt",
    "diff <(echo a) <(touch procsub.txt; echo b)",
    "cat < <(touch procsub2.txt)",
    "echo $(touch subst.txt)",
    "echo `touch backquote.txt`",
    "python3 -c \"open('py.txt', 'w').write('x')\"",
    "perl -e 'open(F, \">perl.txt\")'",
    "sed -i s/alpha/beta/ a.txt",
    "sed -n 'w sedw.txt' a.txt",
    "sed -n '1e touch sede.txt' a.txt",
    "awk 'BEGIN { print \"x\" > \"awk.txt\" }'",
    "awk 'BEGIN { system(\"touch awksys.txt\") }'",
    "find . -name a.txt -fprint find.txt",
    "find . -name a.txt -exec touch findexec.txt \\;",
    "find . -name b.txt -delete",
    "sort -o sorted.txt a.txt",
    "sort a.txt --output=sorted2.txt",
    "uniq a.txt uniq.txt",
    "echo a.txt | xargs -I{} cp {} xargs.txt",
    "git -c core.pager='touch pager.txt' log",
    "git config core.fsmonitor 'touch fsm.txt'",
    "git branch evil && git tag evil",
    "git commit --allow-empty -qm x",
    "git stash",
    "touch -d 2000-01-01 a.txt",
    "chmod 000 a.txt",
    "ln -s /etc/passwd link.txt",
    "mkdir newdir",
    "rm -f b.txt",
    "truncate -s 0 a.txt",
    "dd if=/dev/zero of=b.txt count=1",
    "cp a.txt cp.txt",
    "mv b.txt moved.txt",
    "bash -c 'echo x > nested.txt'",
    "env touch env.txt",
    "ls;touch semicolon.txt",
    "cat a.txt#;touch comment.txt",
    "cat a.txt\ntouch newline.txt",
    "tar cf tar.tar a.txt",
    "curl -o curl.txt file:///etc/hostname",
    "rg --pre 'touch rgpre.txt' alpha",
    "tree -o tree.txt",
]


def _fingerprint(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every path below root with its content hash, mode and mtime: byte-for-byte, metadata included."""
    seen = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
            seen[str(path.relative_to(root))] = (digest, info.st_mode, info.st_mtime_ns)
    return seen


@pytest.fixture
def seeded(workspace: Path) -> Path:
    (workspace / "a.txt").write_text("alpha\nbeta\n")
    (workspace / "b.txt").write_text("bravo\n")
    git(workspace, "init", "-q")
    git(workspace, "add", ".")
    git(workspace, "commit", "-qm", "first")
    return workspace


def _run_all(make_agent, workspace: Path, isolation: str) -> list[dict]:
    calls = [ToolUse(f"t{i}", "bash", {"command": command}) for i, command in enumerate(SNEAKY)]
    server = ScriptedServer([reply(*calls), reply(Text("done"))])
    with server:
        agent, _ = make_agent(server, mode="read-only", isolation=isolation, workers=4)
        agent.send("try to write")
    return [b for b in server.requests[1]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]


def test_the_table_is_big_enough_and_none_of_it_is_allowlisted():
    assert len(SNEAKY) >= 30
    assert [command for command in SNEAKY if allowed(command)] == []


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here (.ci/run installs it)")
@pytest.mark.process
def test_read_only_mode_in_the_sandbox_leaves_the_workspace_byte_for_byte_unchanged(make_agent, seeded):
    before = _fingerprint(seeded)
    results = _run_all(make_agent, seeded, "bwrap")
    assert _fingerprint(seeded) == before
    assert len(results) == len(SNEAKY)
    # They ran (not refused by reading their text) and the kernel said no.
    assert sum("Read-only file system" in r["content"] for r in results) >= 20


def test_read_only_mode_without_a_sandbox_runs_only_the_allowlist(make_agent, seeded):
    before = _fingerprint(seeded)
    results = _run_all(make_agent, seeded, "none")
    assert _fingerprint(seeded) == before
    assert all(r.get("is_error") and "allowlist" in r["content"] for r in results)


def test_allowlisted_readers_run_without_a_sandbox(make_agent, seeded):
    readers = ["cat a.txt | sort -r | uniq -c", "grep -rn alpha .", "find . -name '*.txt' -type f",
               "head -1 a.txt && wc -l a.txt", "ls -la"]
    server = ScriptedServer([reply(*[ToolUse(f"r{i}", "bash", {"command": c}) for i, c in enumerate(readers)]),
                             reply(Text("done"))])
    with server:
        agent, _ = make_agent(server, mode="read-only", isolation="none")
        agent.send("read")
    results = [b for b in server.requests[1]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert not any(r.get("is_error") for r in results), results
    assert "alpha" in results[1]["content"] and "a.txt" in results[2]["content"]


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot run here (.ci/run installs it)")
@pytest.mark.process
def test_ask_mode_runs_what_it_does_not_ask_about_in_the_read_only_sandbox(make_agent, seeded):
    """The person says no to every question: what ran without asking still cannot have written."""
    questions: list[str] = []
    before = _fingerprint(seeded)
    calls = [ToolUse(f"t{i}", "bash", {"command": c}) for i, c in enumerate(["cat a.txt", *SNEAKY])]
    server = ScriptedServer([reply(*calls), reply(ToolUse("y", "bash", {"command": "touch asked.txt"})),
                             reply(Text("done"))])
    with server:
        agent, _ = make_agent(server, mode="ask", workers=4)
        agent.gate.confirm = lambda question, cancelled: (questions.append(question)
                                                          or ("yes" if "asked.txt" in question else "no"))
        agent.send("go")
    results = [b for b in server.requests[1]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert "alpha" in results[0]["content"] and not any("cat a.txt`" in q for q in questions)
    # Whatever got past the classifier ran without a question, and wrote nothing; the approved command did.
    after = _fingerprint(seeded)
    assert after.pop("asked.txt") and after == before


def test_file_names_cannot_turn_into_options_without_a_sandbox(make_agent, seeded):
    """The allowlist checks words; bash must not expand them into options afterwards."""
    (seeded / "-delete").write_text("")
    (seeded / "-o").write_text("")
    before = _fingerprint(seeded)
    commands = ["find . *", "find . {-delete,}", "sort * a.txt", "find . -name '*.txt'"]
    server = ScriptedServer([reply(*[ToolUse(f"g{i}", "bash", {"command": c}) for i, c in enumerate(commands)]),
                             reply(Text("done"))])
    with server:
        agent, _ = make_agent(server, mode="read-only", isolation="none")
        agent.send("glob")
    results = [b for b in server.requests[1]["body"]["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert _fingerprint(seeded) == before
    assert "./a.txt" in results[3]["content"]  # find's own patterns still work
