"""Tool names made OpenAI-valid and unique; schemas normalised and bounded."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from arpo_tools.schemas import ToolCatalog, normalize_schema, sanitize_name

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@given(st.text(max_size=200))
def test_sanitized_names_are_always_valid(name: str) -> None:
    assert VALID.match(sanitize_name(name))


def test_collisions_get_the_server_prefix_and_resolve_back() -> None:
    catalog = ToolCatalog.build(
        [
            ("web", "search", "web search", None),
            ("local", "search", "local search", None),
            ("py", "python", "run code", {"type": "object", "properties": {"code": {"type": "string"}}}),
            ("odd", "a.b", None, None),
            ("odd", "a_b", None, None),  # collides with a.b once sanitised
        ]
    )
    assert catalog.names[:3] == ["web__search", "local__search", "python"]
    assert all(VALID.match(n) for n in catalog.names) and len(set(catalog.names)) == 5
    assert catalog.resolve("local__search") == ("local", "search")
    assert catalog.resolve("python") == ("py", "python")
    assert {catalog.resolve(n) for n in catalog.names[3:]} == {("odd", "a.b"), ("odd", "a_b")}
    assert catalog.resolve("nope") is None


def test_schema_normalisation_and_size_bound() -> None:
    schema, note = normalize_schema({"$schema": "x", "properties": {"q": {"type": "string"}}})
    assert schema == {"type": "object", "properties": {"q": {"type": "string"}}} and note == ""
    schema, _ = normalize_schema(None)
    assert schema == {"type": "object", "properties": {}}
    wordy = {
        "type": "object",
        "properties": {f"p{i}": {"type": "string", "description": "d" * 200} for i in range(30)},
    }
    slim, note = normalize_schema(wordy, max_schema_bytes=2000)
    assert "description" not in json.dumps(slim) and len(json.dumps(slim)) <= 2000 and "dropped" in note
    huge = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(500)}}
    bounded, note = normalize_schema(huge, max_schema_bytes=500)
    assert bounded["additionalProperties"] is True and "p0" in note
