"""The appliance's words are defined once (schema/vocabulary.py), and the OpenAPI document, the
API's checks and the consumer's rules all use those definitions."""

from __future__ import annotations

import ast
import re

import pytest
from procs import REPO

from appliance.api.http.openapi import openapi_document
from appliance.core.timefmt import utc_now_iso
from appliance.schema import vocabulary
from appliance.schema.audit_read import Search, encode_cursor

WORDS = {name: value for name, value in vars(vocabulary).items()
         if isinstance(value, vocabulary.Word)}
PATTERNS = {name: value.pattern for name, value in vars(vocabulary).items()
            if isinstance(value, re.Pattern)}


def parameters(path: str) -> dict[str, dict]:
    operation = openapi_document("test")["paths"][path]["get"]
    return {p["name"]: p["schema"] for p in operation.get("parameters", [])}


def test_the_search_parameters_of_the_document_are_the_vocabulary():
    search = parameters("/events")
    assert search["request_id"] == vocabulary.REQUEST_ID.schema()
    assert search["trace_id"] == vocabulary.TRACE_ID.schema()
    assert search["method"] == vocabulary.METHOD.schema()
    assert search["type"] == vocabulary.EVENT_TYPE.schema()
    assert search["status"]["pattern"] == f"^{vocabulary.STATUS_FILTER.pattern}$"
    assert search["cursor"]["pattern"] == f"^{vocabulary.CURSOR.pattern}$"
    assert search["path"]["maxLength"] == vocabulary.TEXT_LIMITS["path"]


def test_the_published_event_type_and_the_timestamp_of_the_document_are_the_vocabulary():
    schemas = openapi_document("test")["components"]["schemas"]
    assert schemas["PublishRequest"]["properties"]["event_type"]["pattern"] == \
        vocabulary.EVENT_TYPE.schema()["pattern"]
    assert schemas["Index"]["properties"]["timestamp"]["pattern"] == \
        f"^{vocabulary.STORED_INSTANT.pattern}$"


def test_a_cursor_the_appliance_gives_out_has_the_documented_pattern():
    for key in (("2026-01-31T12:00:00.000000Z", 0, 1), (utc_now_iso(), 4, 2**62)):
        cursor = encode_cursor(Search(), key)
        assert vocabulary.CURSOR.fullmatch(cursor), cursor
    assert not vocabulary.CURSOR.fullmatch("0")


def test_the_stored_instant_is_what_the_appliance_writes():
    assert vocabulary.STORED_INSTANT.fullmatch(utc_now_iso())
    assert vocabulary.EVENT_INSTANT.fullmatch("2026-01-31T12:00:00.5Z")


@pytest.mark.parametrize("word", sorted(WORDS))
def test_a_word_is_matched_whole_never_with_a_trailing_newline(word):
    word = WORDS[word]
    example = next(c * word.shortest for c in "a0A" if word.matches(c * word.shortest))
    assert word.matches(example)
    assert not word.matches(example + "\n")
    assert not word.matches("")
    assert not word.matches(None)


def string_constants(path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_each_pattern_of_the_vocabulary_is_written_in_one_module_only():
    vocabulary_module = REPO / "appliance" / "schema" / "vocabulary.py"
    texts = [word.characters for word in WORDS.values()] + list(PATTERNS.values())
    for module in (REPO / "appliance").rglob("*.py"):
        if module == vocabulary_module:
            continue
        for constant in string_constants(module):
            found = [text for text in texts if text in constant]
            assert not found, f"{module.relative_to(REPO)} writes {found} again"
