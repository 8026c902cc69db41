r"""The format check of the tag protocol (spec §5): a response that fails it gets the format penalty.

A response passes when

1. every tool call ``<tool>…</tool>`` (``tool`` in ``tool_tags``, by default ``search`` and ``python``) is closed
   and followed by a ``<result>…</result>`` block before anything else (another call, a think or answer tag),
   and every result block follows such a call;
2. the ``<think>`` / ``</think>`` tags alternate open, close, open, close … (balanced, never nested), and there
   is at least one think block when ``require_think`` (the reference requires one);
3. there is exactly one ``<answer>`` and one ``</answer>``, in that order, and the block between them holds a
   well-formed ``\boxed{…}`` (or ``\fbox{…}``).

Tags are matched exactly (lower case, no attributes). The *contents* of tool calls and result blocks are opaque:
tags inside them do not count, because a search snippet or a program's output can contain any text (a web page
that says ``<answer>`` must not break the response that quoted it). Tool calls may sit inside think blocks, and
text outside tags is free, as in the reference.

Deviations from the reference (``validate_format`` of the ARPO / Tool-Star verl fork), each a defect there:

* the reference pairs a tool call with the next ``<result>`` *anywhere* after it, so two calls in a row share one
  result (``<search>a</search><python>b</python><result>r</result>`` passes there); here a call must be
  followed by its own result;
* it never checks that a ``<result>`` follows a call, so a response may write its own "tool results"; here a
  result block without a call fails;
* it counts tags over the whole text, so a tag quoted in a tool result or in code changes the verdict; here
  tool calls and results are opaque;
* it only compares the numbers of ``<think>`` and ``</think>``, so ``</think> … <think>`` passes; here the
  order is checked;
* it accepts any ``\boxed{`` followed somewhere by ``}``; here the box must be well formed (the reference then
  fails the same responses when extracting the answer, with reward −1 either way).

``FormatCheck.tool_calls`` lists the names of the complete calls (call plus result) in order, scanned up to the
first problem, so that the reward can see which tools a response really used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from arpo_core.algo.rewards.boxed import contains_braced_box

__all__ = ["DEFAULT_TOOL_TAGS", "RESERVED_TAGS", "TOOL_TAG_NAME", "FormatCheck", "check_format"]

DEFAULT_TOOL_TAGS: tuple[str, ...] = ("search", "python")
"""The reference's tools: web search and a Python interpreter."""
RESERVED_TAGS = frozenset({"think", "answer", "result"})
"""Tag names of the protocol itself; they cannot name a tool."""
TOOL_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
"""What a tool tag may be called: a letter, then letters, digits, ``_``, ``.`` or ``-``."""


@dataclass(frozen=True, slots=True)
class FormatCheck:
    """Verdict of :func:`check_format`."""

    ok: bool
    reason: str | None = None
    """One sentence naming what is wrong; ``None`` when ``ok``."""
    tool_calls: tuple[str, ...] = ()
    """Names of the complete tool calls (each followed by its result), in order."""


@dataclass(frozen=True, slots=True)
class _Tag:
    name: str
    closing: bool
    start: int
    end: int


@lru_cache(maxsize=32)
def _tag_pattern(tool_tags: tuple[str, ...]) -> re.Pattern[str]:
    names = sorted({*RESERVED_TAGS, *tool_tags}, key=len, reverse=True)
    return re.compile(r"<(/?)(" + "|".join(re.escape(name) for name in names) + r")>")


def _validated_tool_tags(tool_tags: Iterable[str]) -> tuple[str, ...]:
    tags = tuple(tool_tags)
    for tag in tags:
        if not TOOL_TAG_NAME.fullmatch(tag) or tag in RESERVED_TAGS:
            raise ValueError(
                f"tool tag {tag!r} is not usable: a tool tag is a letter then letters, digits, '_', '.' or '-', "
                f"and not one of {sorted(RESERVED_TAGS)}."
            )
    return tags


def _find_close(tags: list[_Tag], start: int, name: str) -> int | None:
    for j in range(start, len(tags)):
        if tags[j].closing and tags[j].name == name:
            return j
    return None


def check_format(
    response: str, tool_tags: Iterable[str] = DEFAULT_TOOL_TAGS, *, require_think: bool = True
) -> FormatCheck:
    """Check ``response`` (the generated text, prompt excluded) against the tag protocol; never raises on text."""
    tools = _validated_tool_tags(tool_tags)
    tags = [_Tag(m.group(2), m.group(1) == "/", m.start(), m.end()) for m in _tag_pattern(tools).finditer(response)]
    tool_set = frozenset(tools)
    calls: list[str] = []
    outer: list[_Tag] = []  # think and answer tags outside tool calls and results
    pending: str | None = None  # a closed tool call still waiting for its result
    i = 0
    while i < len(tags):
        tag = tags[i]
        if tag.name in tool_set or tag.name == "result":
            if tag.closing:
                return FormatCheck(False, f"</{tag.name}> at character {tag.start} closes no open tag.", tuple(calls))
            if tag.name == "result" and pending is None:
                return FormatCheck(
                    False, f"the <result> block at character {tag.start} does not follow a tool call.", tuple(calls)
                )
            if tag.name != "result" and pending is not None:
                return FormatCheck(False, f"the <{pending}> call is not followed by a <result> block.", tuple(calls))
            close = _find_close(tags, i + 1, tag.name)
            if close is None:
                return FormatCheck(False, f"the <{tag.name}> at character {tag.start} is never closed.", tuple(calls))
            if pending is not None:  # this is the result block of the pending call, which is now complete
                calls.append(pending)
                pending = None
            else:
                pending = tag.name
            i = close + 1
            continue
        if pending is not None:
            return FormatCheck(False, f"the <{pending}> call is not followed by a <result> block.", tuple(calls))
        outer.append(tag)
        i += 1
    if pending is not None:
        return FormatCheck(False, f"the last <{pending}> call has no <result> block after it.", tuple(calls))
    found_calls = tuple(calls)

    think_tags = [tag for tag in outer if tag.name == "think"]
    for k, tag in enumerate(think_tags):
        if tag.closing != (k % 2 == 1):
            what = "</think> comes before its <think>" if tag.closing else "<think> opens inside another think block"
            return FormatCheck(False, f"the think tags are unbalanced: {what} (character {tag.start}).", found_calls)
    if len(think_tags) % 2 == 1:
        return FormatCheck(False, "the think tags are unbalanced: the last <think> is never closed.", found_calls)
    if require_think and not think_tags:
        return FormatCheck(False, "the response has no <think>…</think> block.", found_calls)

    answer_tags = [tag for tag in outer if tag.name == "answer"]
    opens = [tag for tag in answer_tags if not tag.closing]
    closes = [tag for tag in answer_tags if tag.closing]
    if len(opens) != 1 or len(closes) != 1:
        return FormatCheck(
            False,
            f"the response needs exactly one <answer>…</answer> block, found {len(opens)} <answer> "
            f"and {len(closes)} </answer>.",
            found_calls,
        )
    if closes[0].start < opens[0].start:
        return FormatCheck(False, "</answer> comes before <answer>.", found_calls)
    if not contains_braced_box(response[opens[0].end : closes[0].start]):
        return FormatCheck(False, "the answer block has no well-formed \\boxed{…}.", found_calls)
    return FormatCheck(True, None, found_calls)
