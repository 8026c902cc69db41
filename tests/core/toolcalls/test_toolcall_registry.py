"""make_parser: choosing a protocol by name."""

from __future__ import annotations

import pytest

from arpo_core.toolcalls import PROTOCOLS, HermesProtocol, TagProtocol, ToolCallParser, make_parser


def test_protocol_names() -> None:
    assert PROTOCOLS == ("tags", "hermes")


def test_tags_default_to_the_papers_tools() -> None:
    parser = make_parser("tags")
    assert isinstance(parser, TagProtocol)
    assert dict(parser.tools) == {"python": "code", "search": "query"}


def test_tags_from_a_mapping_and_a_size_limit() -> None:
    parser = make_parser("tags", {"wiki": "title"}, max_argument_chars=5)
    assert isinstance(parser, TagProtocol)
    assert parser.stop_sequences == ("</wiki>",)
    assert parser.max_argument_chars == 5


def test_tags_from_names_of_default_tools() -> None:
    parser = make_parser("tags", ["search"])
    assert isinstance(parser, TagProtocol)
    assert dict(parser.tools) == {"search": "query"}


def test_tags_from_an_unknown_bare_name_asks_for_a_mapping() -> None:
    with pytest.raises(ValueError, match=r"pass a mapping such as \{'calc': 'input'\}"):
        make_parser("tags", ["search", "calc"])


@pytest.mark.parametrize("protocol", ["tags", "hermes"])
def test_a_bare_string_is_not_a_tool_list(protocol: str) -> None:
    with pytest.raises(ValueError, match="not the string"):
        make_parser(protocol, "search")  # type: ignore[arg-type]


def test_hermes_takes_names_or_a_mappings_keys() -> None:
    parser = make_parser("hermes", {"search": "query"}, stop_on_call_end=True, max_calls_per_turn=3)
    assert isinstance(parser, HermesProtocol)
    assert parser.tools == frozenset({"search"})
    assert parser.stop_sequences == ("</tool_call>",)
    assert parser.max_calls_per_turn == 3
    assert make_parser("hermes").parse('<tool_call>{"name": "x"}</tool_call>').calls[0].name == "x"


def test_unknown_protocol_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"Unknown tool-call protocol 'json': choose one of 'tags', 'hermes'\."):
        make_parser("json")  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_satisfies_the_parser_protocol(protocol: str) -> None:
    assert isinstance(make_parser(protocol), ToolCallParser)  # type: ignore[arg-type]
