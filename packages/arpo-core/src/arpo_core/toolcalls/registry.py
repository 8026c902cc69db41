"""Choosing a tool-call parser by name: `make_parser("tags" | "hermes", tools=...)`.

`"tags"` is ARPO's own protocol (`TagProtocol`, the paper's); `"hermes"` is JSON `<tool_call>` blocks for chat
models trained for function calling (`HermesProtocol`, arpo-spec §6). Configs name the protocol with one of
`PROTOCOLS`; an unknown name fails with one sentence listing the choices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Literal, TypeAlias, get_args

from .calls import DEFAULT_MAX_ARGUMENT_CHARS, DEFAULT_MAX_CALLS_PER_TURN, ToolCallParser
from .hermes import HermesProtocol
from .tags import DEFAULT_TAG_TOOLS, TagProtocol

__all__ = ["PROTOCOLS", "ProtocolName", "make_parser"]

ProtocolName = Literal["tags", "hermes"]
PROTOCOLS: tuple[ProtocolName, ...] = get_args(ProtocolName)

ToolsSpec: TypeAlias = Mapping[str, str] | Iterable[str] | None


def make_parser(
    protocol: ProtocolName,
    tools: ToolsSpec = None,
    *,
    max_argument_chars: int = DEFAULT_MAX_ARGUMENT_CHARS,
    max_calls_per_turn: int = DEFAULT_MAX_CALLS_PER_TURN,
    stop_on_call_end: bool = False,
) -> ToolCallParser:
    """The parser for `protocol`; raises `ValueError` naming the choices for an unknown one.

    `tools`: for `"tags"`, a mapping tag name → argument name, or tool names among the paper's defaults
    (`python` → `code`, `search` → `query`); None means the defaults. For `"hermes"`, the tool names calls
    may use (a mapping's keys are taken), or None for any name. `max_calls_per_turn` and `stop_on_call_end`
    apply to `"hermes"` only: the tag protocol reads one call per segment and always stops on the closing tag.
    """
    factory = _FACTORIES.get(protocol)
    if factory is None:
        choices = ", ".join(repr(name) for name in PROTOCOLS)
        raise ValueError(f"Unknown tool-call protocol {protocol!r}: choose one of {choices}.")
    return factory(tools, max_argument_chars, max_calls_per_turn, stop_on_call_end)


def _make_tags(
    tools: ToolsSpec, max_argument_chars: int, max_calls_per_turn: int, stop_on_call_end: bool
) -> ToolCallParser:
    return TagProtocol(_tag_tools(tools), max_argument_chars=max_argument_chars)


def _make_hermes(
    tools: ToolsSpec, max_argument_chars: int, max_calls_per_turn: int, stop_on_call_end: bool
) -> ToolCallParser:
    if isinstance(tools, str):
        raise ValueError(f"tools must be a collection of names, not the string {tools!r}: wrap it in a list.")
    return HermesProtocol(
        None if tools is None else list(tools),
        stop_on_call_end=stop_on_call_end,
        max_argument_chars=max_argument_chars,
        max_calls_per_turn=max_calls_per_turn,
    )


_FACTORIES: dict[str, Callable[[ToolsSpec, int, int, bool], ToolCallParser]] = {
    "tags": _make_tags,
    "hermes": _make_hermes,
}


def _tag_tools(tools: ToolsSpec) -> Mapping[str, str] | None:
    if tools is None or isinstance(tools, Mapping):
        return tools
    if isinstance(tools, str):
        raise ValueError(f"tools must be a collection of names, not the string {tools!r}: wrap it in a list.")
    names = list(tools)
    unknown = [name for name in names if name not in DEFAULT_TAG_TOOLS]
    if unknown:
        raise ValueError(
            f"The tag protocol does not know which argument {unknown[0]!r} fills: pass a mapping "
            f"such as {{{unknown[0]!r}: 'input'}}."
        )
    return {name: DEFAULT_TAG_TOOLS[name] for name in names}
