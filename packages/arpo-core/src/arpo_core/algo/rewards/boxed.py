r"""Extraction of the final answer: the last ``\boxed{…}`` and the last ``<answer>…</answer>`` block (spec §5).

Rule: find the last ``\boxed`` or ``\fbox`` command (a command name ends at a non-letter, so ``\boxedx`` is not
one). Its argument is either

* a brace group — skip whitespace, then ``{`` … the matching ``}``; braces are counted with their nesting, and a
  backslash escapes the next character, so ``\{``, ``\}`` and ``\\`` never count as group braces; or
* one token — ``\boxed 12`` — the run of characters after the spaces up to the next whitespace, ``$`` or ``<``.

An unclosed brace group, or a command with no argument, gives ``None``; it does not fall back to an earlier
``\boxed``: the model's *last* answer is the one that counts.

Deviations from the reference (``last_boxed_only_string`` / ``remove_boxed`` of the ARPO / Tool-Star verl fork,
inherited from the MATH and lm-eval-harness scripts), each a defect there:

* the reference tests ``"\\boxed " in text`` before anything else, so one ``\boxed `` with a space *anywhere*
  wins over a later ``\boxed{…}``, and the answer it returns is everything after that space up to the next
  ``$`` — a whole sentence (``"\boxed 5 and the rest of the answer"``). Here the last command wins and the
  space form takes one token;
* the reference counts escaped braces ``\{`` ``\}`` as group braces, so ``\boxed{\left\{ x \right.}`` is cut
  in the wrong place or not at all; here they are literal characters;
* the reference raises (``assert``) on a malformed box, which its caller turns into reward −1; here it is
  ``None``, and the format check reports it.
"""

from __future__ import annotations

import re

__all__ = ["contains_braced_box", "extract_answer_block", "extract_boxed"]

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_SPACE_TOKEN = re.compile(r"[^\s$<]+")
_ANSWER_OPEN = "<answer>"
_ANSWER_CLOSE = "</answer>"


def _brace_group(text: str, start: int) -> str | None:
    """Content of the brace group opening at ``text[start] == "{"``, or ``None`` when it never closes."""
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def _box_argument(text: str, command_end: int) -> tuple[str, bool] | None:
    """(argument, braced) of the box command ending at ``command_end``; ``None`` when it has no argument."""
    i = command_end
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] == "{":
        content = _brace_group(text, i)
        return None if content is None else (content, True)
    if i == command_end:  # `\boxed5` or `\boxed$`: no space and no brace, so no argument
        return None
    token = _SPACE_TOKEN.match(text, i)
    return None if token is None else (token.group(0), False)


def extract_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{…}`` / ``\fbox{…}`` (or ``\boxed token``) in ``text``; ``None`` if none."""
    last = None
    for match in _BOX_COMMAND.finditer(text):
        last = match
    if last is None:
        return None
    argument = _box_argument(text, last.end())
    return None if argument is None else argument[0]


def contains_braced_box(text: str) -> bool:
    r"""Whether ``text`` has at least one well-formed ``\boxed{…}`` or ``\fbox{…}`` (the format check's rule)."""
    for match in _BOX_COMMAND.finditer(text):
        argument = _box_argument(text, match.end())
        if argument is not None and argument[1]:
            return True
    return False


def extract_answer_block(text: str) -> str | None:
    """Content of the last ``<answer>…</answer>`` block (the last close tag and the last open tag before it)."""
    close = text.rfind(_ANSWER_CLOSE)
    if close == -1:
        return None
    open_ = text.rfind(_ANSWER_OPEN, 0, close)
    if open_ == -1:
        return None
    return text[open_ + len(_ANSWER_OPEN) : close]
