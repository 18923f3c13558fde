"""The help screen (?) lists the dashboard's keys: every key the main screen and the app bind,
and no key that is not bound. Read from the screen, as a person reads it."""

from __future__ import annotations

import asyncio
import re

from test_dashboard import screen_text
from test_dashboard_snapshots import all_up_answers, make_app, polls
from textual.binding import Binding

from dashboard.app import DashboardApp
from dashboard.screens.help import KEY_NAMES, HelpScreen
from dashboard.screens.main import MainScreen

TEXTUAL_NAMES = {written: key for key, written in KEY_NAMES.items()}


def help_lines(text: str) -> list[tuple[list[str], str]]:
    """(keys, what they do) per line of the help dialog on screen (its border drawn "█")."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if " Keys " in line)
    found = []
    for line in lines[top + 1:]:
        if "esc or ?: close" in line:
            break
        inner = line[line.index("█") + 1:line.rindex("█")].strip()
        if inner:
            keys, what = re.split(r"\s{2,}", inner, maxsplit=1)
            found.append((re.split(r" or | ", keys), what))
    return found


async def open_help() -> tuple[list[tuple[list[str], str]], dict]:
    """The help's lines, and the keys bound on the main screen (the events table focused)."""
    app, clock = make_app(all_up_answers())
    async with app.run_test(size=(80, 24)) as pilot:
        await polls(clock, 0)(pilot)
        bound = dict(app.screen.active_bindings)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        return help_lines(screen_text(app)), bound


def test_every_key_the_main_screen_and_the_app_bind_is_in_the_help():
    lines, _ = asyncio.run(open_help())
    listed = {KEY_NAMES.get(key, key) for keys, _ in lines for key in keys}
    for binding in Binding.make_bindings([*DashboardApp.BINDINGS, *MainScreen.BINDINGS]):
        shown = KEY_NAMES.get(binding.key, binding.key)
        assert shown in listed, f"{shown} ({binding.action}) is bound but not in the help: add it to HELP"


def test_every_key_in_the_help_is_bound_on_the_main_screen():
    lines, bound = asyncio.run(open_help())
    assert len(lines) >= 10
    for keys, what in lines:
        for key in keys:
            assert TEXTUAL_NAMES.get(key, key) in bound, \
                f"the help says {key!r} does {what!r}: it is not bound"
