"""dashboard.safetext: which characters are shown as escapes, and how; the rest as it is."""

from __future__ import annotations

import json

from rich.text import Text

from dashboard.safetext import json_text, plain, visible

C0 = [chr(code) for code in range(0x20)]
C1 = [chr(code) for code in range(0x80, 0xA0)]
BIDI = [chr(code) for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)]
SEPARATORS = ["\u2028", "\u2029"]
SURROGATES = ["\ud800", "\udc80", "\udfff"]
UNSAFE = C0 + ["\x7f"] + C1 + BIDI + SEPARATORS + SURROGATES


def test_control_characters_are_shown_as_escapes_like_python_writes_them():
    assert visible("\x1b]0;PWNED\x07\x1b[2J") == r"\x1b]0;PWNED\x07\x1b[2J"
    assert visible("a\tb\nc\rd\x00e\x7f") == r"a\tb\nc\rd\x00e\x7f"
    assert visible("\x9b31m \x85") == r"\x9b31m \x85"
    assert visible("/admin\u202egnp.exe \u2066x\u2069 \u2028") == r"/admin\u202egnp.exe \u2066x\u2069 \u2028"
    assert visible("lone \udc80") == r"lone \udc80"


def test_every_unsafe_character_becomes_printable_ascii_and_nothing_else_changes():
    for char in UNSAFE:
        shown = visible(char)
        assert shown != char and shown.isascii() and shown.isprintable(), repr(char)
    kept = "ASCII ~!@#$%^&*()[]{}<>\\ café 中文 👍 👩‍💻 e\u0301 \u00a0 \u200b"  # ZWJ emoji, combining mark
    assert visible(kept) == kept


def test_plain_is_a_text_never_parsed_as_markup_with_its_escapes_in_reverse_video():
    text = plain("[bold]x[/] \x1b!", "green")
    assert isinstance(text, Text) and text.plain == r"[bold]x[/] \x1b!" and text.style == "green"
    assert [(text.plain[span.start:span.end], span.style) for span in text.spans] == [(r"\x1b", "reverse")]


def test_json_text_is_the_same_json_with_no_unsafe_character_left_raw():
    # (spaced: a high and a low surrogate side by side would read back as one pair)
    event = {"path": " ".join(UNSAFE), "user_agent": "[/] café", "k\x9b": [1, None, True]}
    body = json_text(event)
    assert json.loads(body) == event
    assert not [char for char in UNSAFE if char in body.replace("\n", "")]
    assert '"user_agent": "[/] café"' in body and r'"k\u009b"' in body
