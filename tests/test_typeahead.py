"""Type-ahead key handling: editing keys, Enter queues, Esc calls back, escape sequences are skipped."""

from __future__ import annotations

from midstream.tools.cli.typeahead import TypeAhead


def test_keys_build_a_line_enter_queues_it_and_esc_calls_back():
    shown: list[tuple[str, list[str]]] = []
    escapes: list[str] = []
    keys = TypeAhead(-1, lambda typed, queued: shown.append((typed, queued)), on_escape=lambda: escapes.append("esc"))
    keys.feed(b"fix teh")
    keys.feed(b"\x7f\x7fhe bug\r")  # Backspace twice, then Enter
    keys.feed(b"  \r")  # an empty line queues nothing
    keys.feed(b"then \x1b[Drun it\x17tests")  # an arrow key is skipped; Ctrl-W deletes a word
    assert keys.queued == ["fix the bug"] and keys.typed == "then run tests"
    assert shown[-1] == ("then run tests", ["fix the bug"])
    assert escapes == []
    keys.feed(b"\x1b")  # Esc alone in a read: the Esc key
    assert escapes == ["esc"]
    keys.feed("caf\u00e9 ".encode()[:4])  # a character split across reads
    keys.feed("caf\u00e9 ".encode()[4:] + b"\x15ok")  # Ctrl-U clears the line
    assert keys.typed == "ok"
    assert keys.next_message() == "fix the bug" and keys.next_message() is None
    assert keys.leftover() == "ok" and keys.leftover() == ""


def test_a_paste_during_a_turn_is_one_message_and_up_takes_back_the_last_queued():
    from midstream.tools.cli.attach import Pastes

    pastes = Pastes()
    keys = TypeAhead(-1, fold=pastes.fold)
    lines = "".join(f"line {i}\r" for i in range(43))
    keys.feed(b"see: \x1b[200~" + lines[:100].encode())  # a paste cut across reads, its end marker too
    keys.feed(lines[100:].encode() + b"\x1b[20")
    keys.feed(b"1~\r")
    assert keys.queued == ["see: [pasted 43 lines]"] and keys.typed == ""
    assert pastes.expand(keys.queued[0]) == "see: " + "\n".join(f"line {i}" for i in range(43))
    keys.feed(b"second\r")
    keys.feed(b"\x1b[A")  # Up: the last queued message comes back to be edited
    assert keys.queued == ["see: [pasted 43 lines]"] and keys.typed == "second"
    keys.feed(b"\x15")  # Ctrl-U drops it
    assert keys.typed == "" and keys.queued == ["see: [pasted 43 lines]"]
