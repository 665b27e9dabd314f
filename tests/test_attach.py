"""``@path`` mentions and folded pastes: what a message carries besides what was typed."""

from __future__ import annotations

import os

from midstream.tools.cli.attach import Pastes, attach_mentions, mentions


def test_mentions_attach_files_and_listings_and_nothing_outside(tmp_path):
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "app.py").write_text("print('app')\n")
    (workspace / "blob.bin").write_bytes(b"\0\1\2" * 10)
    (tmp_path / "secret.txt").write_text("outside\n")
    os.symlink(tmp_path / "secret.txt", workspace / "link.txt")
    text = "see @src/app.py, @src and @blob.bin; not @../secret.txt, @link.txt, @/etc/passwd or @someone"
    assert mentions(text)[:3] == ["src/app.py", "src", "blob.bin"]
    sent, notes = attach_mentions(text, workspace)
    assert sent.startswith(text)
    assert '<attachment path="src/app.py">\nprint(\'app\')\n</attachment>' in sent
    assert '<attachment path="src">\napp.py\n</attachment>' in sent
    assert "binary file of 30 bytes" in sent
    assert "outside" not in sent and "root:" not in sent  # nothing from outside the workspace, links included
    assert sum("outside the workspace, not attached" in note for note in notes) == 3, notes
    assert not any("someone" in note for note in notes)  # a word that names nothing is just a word


def test_a_long_paste_folds_to_a_token_and_expands_back():
    pastes = Pastes()
    short = pastes.fold("one line")
    assert short == "one line"
    block = "".join(f"row {i}\r\n" for i in range(10))
    token = pastes.fold(block)
    assert token == "[pasted 10 lines]"
    other = pastes.fold("".join(f"other {i}\n" for i in range(10)))
    assert other == "[pasted 10 lines #2]"
    assert pastes.expand(f"a {token} b") == "a " + "\n".join(f"row {i}" for i in range(10)) + " b"
