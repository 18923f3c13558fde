"""The README says what the code does: its table of variables is the settings' table, with the
same defaults, and its Quick start has the two commands .ci/run and the tests rely on."""

from __future__ import annotations

import re
from dataclasses import fields

from procs import REPO

from appliance.core.config import VARIABLES, Settings

README = (REPO / "README.md").read_text()


def section(title: str) -> str:
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.M | re.S)
    assert found, f"README has no section '## {title}'"
    return found.group(1)


def variable_rows() -> dict[str, str]:
    """Each variable of the table, with the default cell of its row."""
    rows = {}
    for line in section("Configuration").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([A-Z_*]+)`", cells[0]):
            rows[name] = cells[1]
    return rows


def test_the_readme_names_every_setting_and_nothing_else():
    documented = set(variable_rows())
    assert documented - {"KAFKA_*"} == {name for name, _, _ in VARIABLES}
    assert "KAFKA_*" in documented, "the librdkafka pass-through (KAFKA_*) is not documented"


def test_the_readme_defaults_of_number_settings_are_the_settings_defaults():
    defaults = {f.name: f.default for f in fields(Settings)}
    rows = variable_rows()
    checked = 0
    for name, attribute, _ in VARIABLES:
        default = defaults[attribute]
        cell = rows[name].strip("`")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and \
                re.fullmatch(r"[0-9.]+", cell):
            assert float(cell) == float(default), f"{name}: README {cell}, settings {default}"
            checked += 1
    assert checked >= 15


def test_the_quick_start_has_the_run_and_the_test_command():
    quick = section("Quick start")
    assert "<!-- run-command -->" in quick and "<!-- test-command -->" in quick
    assert re.search(r"<!-- test-command -->\n```\n.*pytest.*\n```\n<!-- /test-command -->", quick)


def test_the_readme_is_a_user_s_document_not_a_diary():
    assert len(README.splitlines()) < 400
    assert not re.search(r"\b[0-9a-f]{7}\b`", README), "commit hashes belong in bench/README.md"
