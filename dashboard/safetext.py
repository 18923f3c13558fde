"""Text from the appliance, made safe to draw: plain (never markup), every control character
shown as a visible escape.

Anonymous clients choose much of what the appliance records (a path, a query, a User-Agent, a
proxy chain, a custom event's payload) and the appliance's answers carry it to the screen. Two
things must never happen to such a value:

- Parsed as markup. Textual and Rich read a ``str`` as markup in many places (DataTable and
  Rich Table cells, ``Static.update``, border titles, notifications): ``[/]`` raises
  MarkupError and ends the app, ``[@click=app.quit]`` or ``[link=...]`` act. A
  ``rich.text.Text`` is never parsed, so every value from the appliance is drawn as one made
  by ``plain`` (and ``notify`` gets ``visible(...)`` with ``markup=False``).
- Written to the terminal as a control. ESC starts an instruction to the terminal (OSC 0 sets
  the window title, OSC 52 writes the clipboard, OSC 8 makes a link, CSI 2 J clears the
  screen), U+009B is CSI in one character, BEL rings; Rich lets most of them through.

Shown as escapes (in reverse video, as ``less`` shows control characters):

- C0 controls U+0000-U+001F and DEL U+007F: ``\\x1b``, ``\\x07``, ``\\x7f``; TAB, LF and CR
  as ``\\t``, ``\\n``, ``\\r`` (a field is drawn on one line); C1 controls U+0080-U+009F:
  ``\\x9b``.
- The bidirectional controls that reorder the text after them (U+202A-U+202E embeddings and
  overrides, U+2066-U+2069 isolates) and the invisible direction marks (U+200E, U+200F,
  U+061C): a path must not read otherwise than it is ("Trojan Source"): ``\\u202e``.
- U+2028 and U+2029, the line and paragraph separators: one line stays one line.
- Lone surrogates U+D800-U+DFFF (JSON can carry ``"\\udc80"``): no terminal encoding has them.

Everything else is drawn as it is: accents, CJK, emoji (with their zero-width joiners). A
backslash is drawn as it is, so ``\\x1b`` on screen can also be those four characters typed by
a client; the escapes' reverse video tells them apart, and so does the event's JSON view, where
``json_text`` keeps JSON's own escapes (``"\\u001b"`` is ESC, ``"\\\\x1b"`` four characters).
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.text import Text

# What JSON lets through raw (it escapes the C0 controls itself); UNSAFE adds the C0 controls.
RAW_IN_JSON = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
UNSAFE = re.compile(f"[\x00-\x1f{RAW_IN_JSON}]")
UNSAFE_IN_JSON = re.compile(f"[{RAW_IN_JSON}]")
SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
ESCAPE_STYLE = "reverse"


def escape(char: str) -> str:
    """One unsafe character as the escape shown in its place: \\x1b, \\t, \\u202e."""
    code = ord(char)
    return SHORT.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def visible(text: str) -> str:
    """``text`` with every unsafe character replaced by its escape."""
    return UNSAFE.sub(lambda match: escape(match.group()), text)


def plain(value: Any, style: str = "") -> Text:
    """``str(value)`` as a Text in ``style``: never parsed as markup, its unsafe characters
    shown as escapes in reverse video. What every widget draws a value of the appliance with."""
    source = str(value)
    text = Text(style=style)
    start = 0
    for match in UNSAFE.finditer(source):
        text.append(source[start:match.start()])
        text.append(escape(match.group()), style=ESCAPE_STYLE)
        start = match.end()
    text.append(source[start:])
    return text


def json_text(value: Any) -> str:
    """Indented JSON of ``value`` with no unsafe character left raw: JSON escapes the C0
    controls itself; DEL, C1, the bidirectional controls, the separators and lone surrogates,
    which it lets through, become JSON escapes too (``\\u009b``), so the text stays valid JSON."""
    body = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return UNSAFE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", body)
