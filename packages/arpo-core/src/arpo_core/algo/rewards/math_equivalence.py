r"""Mathematical equivalence of a predicted answer and a gold answer, with HuggingFace ``math-verify`` (spec §5).

Rule, in order::

    math_equal(pred, gold) =
        True                              if normalize(pred) == normalize(gold) ≠ ""     (string shortcut)
        False                             if either side is too long or too costly       (guard, below)
        verify(parse(gold), parse(pred))  if both sides parse to a SymPy object
        False                             otherwise (the strings already differ)

``normalize`` is a light LaTeX clean-up: strip ``$…$`` / ``\(…\)`` / ``\[…\]`` delimiters, ``\left`` ``\right``,
spacing commands (``\!`` ``\,`` ``\;`` ``\:`` ``\ ``), degree signs, ``\%``, unwrap ``\text{…}``-like groups,
``\dfrac``/``\tfrac`` → ``\frac``, drop all whitespace and a trailing period. ``parse`` is ``math_verify.parse``
of the answer wrapped in ``$…$``; ``verify`` is ``math_verify.verify`` with the gold first (it is not symmetric:
the gold decides, e.g., how an equation ``x = 5`` is compared with ``5``).

Timeouts. ``math_verify`` bounds parsing and comparison with ``signal.alarm`` (a POSIX signal), which only works
in the main thread: from any other thread ``parse`` and ``verify`` raise ``ValueError`` instead of comparing.
So the signal timeout (``timeout_seconds``) is used only in the main thread of a POSIX process; in a worker
thread both are called with the timeout disabled (``None``). Note that ``signal.alarm`` also cancels any alarm
the host process had pending (e.g. pytest-timeout's signal method). A runtime that needs a hard bound on every
call should score math answers in a process pool: a pool worker runs each task in its own main thread, where
the signal timeout applies.

Guard (all threads). The signal timeout cannot interrupt one long C-level big-integer operation, and measured
inputs of a dozen characters hang ``math-verify`` for minutes with or without it: ``\binom{99999999}{5000}``
hangs even with a 2 s alarm; ``9^{9^{9}}``, ``2^{999999999999}``, ``999999999!`` hang without one. So before
parsing, an answer is refused (compared as a string only) when it is longer than ``max_chars``, or when it uses
a number-growing operator (``^``, ``**``, ``!``, ``\binom``, ``\choose``, ``\prod``, ``\sum``) together with an
integer of more than 4 digits, a power whose exponent holds another operator (a tower), or a factorial of a
group. This is a heuristic: in a worker thread, without the alarm, a short symbolic expansion such as
``(a+b+c+d+e+f+g+h)^{9}`` can still take long — hence the process-pool advice above.

Deviations from the reference (``is_equiv`` of the ARPO / Tool-Star verl fork): the reference calls
``parse``/``verify`` with math-verify's default signal timeouts, which raise in worker threads, and a bare
``except`` turns that error into a silent fallback, so from a thread its math reward quietly degrades to string
matching; it has no guard against number blow-ups; on parse failure it falls back to the MATH-dataset
``strip_string`` (with a hard-coded ``0.5`` → ``\frac{1}{2}``), which ``math-verify`` already covers
symbolically, so here a failed parse means "not equal" once the normalised strings differ.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

__all__ = ["DEFAULT_MATH_MAX_CHARS", "DEFAULT_MATH_TIMEOUT_SECONDS", "math_equal", "normalize_math_text"]

DEFAULT_MATH_MAX_CHARS = 400
"""Longest answer (in characters) handed to ``math-verify``; the longest gold in the reference data has 215."""
DEFAULT_MATH_TIMEOUT_SECONDS = 2
"""Signal timeout per parse and per comparison, main thread only (the Tool-Star reference uses 2 s)."""

_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\left(?![A-Za-z])|\\right(?![A-Za-z])|\\[!,;: ]|\\q?quad(?![A-Za-z])")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?")
_FRAC_VARIANT = re.compile(r"\\[dt]frac(?![A-Za-z])")
_WHITESPACE = re.compile(r"\s+")

_GROWTH_OPERATOR = re.compile(r"\^|\*\*|!|\\[dt]?binom(?![A-Za-z])|\\choose(?![A-Za-z])|\\prod|\\sum")
_LONG_INTEGER = re.compile(r"\d{5,}")
_POWER = re.compile(r"\^|\*\*")
_GROUP_FACTORIAL = re.compile(r"[)}\]]\s*!")
_COMMAND = re.compile(r"\\[A-Za-z]+")


def _strip_delimiters(text: str) -> str:
    s = text.strip()
    for left, right in _DELIMITERS:
        if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
            return s[len(left) : len(s) - len(right)].strip()
    return s


def normalize_math_text(text: str) -> str:
    r"""Light LaTeX clean-up used for the string shortcut and the fallback (see the module docstring)."""
    s = _TEXT_WRAPPER.sub(r"\1", _strip_delimiters(text))
    s = _DEGREES.sub("", s)
    s = _SPACING.sub("", s)
    s = _FRAC_VARIANT.sub(r"\\frac", s)
    s = s.replace("\\%", "").replace("%", "")
    s = _WHITESPACE.sub("", s)
    return s.removesuffix(".")


def _exponent(text: str, operator_end: int) -> tuple[str, int]:
    """(argument, end) of the power operator ending at ``operator_end``: a brace group or one token."""
    i = operator_end
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] == "{":
        depth = 0
        for j in range(i, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1 : j], j + 1
        return text[i + 1 :], len(text)
    command = _COMMAND.match(text, i)
    end = command.end() if command else min(i + 1, len(text))
    return text[i:end], end


def _is_tower(text: str) -> bool:
    """A power whose exponent holds a growth operator (``9^{9^{9}}``) or is itself raised (``x^x^x``)."""
    for power in _POWER.finditer(text):
        exponent, end = _exponent(text, power.end())
        if _GROWTH_OPERATOR.search(exponent) or _POWER.match(text[end:].lstrip()):
            return True
    return False


def _too_costly(text: str, max_chars: int) -> bool:
    if len(text) > max_chars:
        return True
    if not _GROWTH_OPERATOR.search(text):
        return False
    return bool(_LONG_INTEGER.search(text) or _GROUP_FACTORIAL.search(text) or _is_tower(text))


def _signal_timeout(timeout_seconds: int | None) -> int | None:
    """The timeout to hand to math-verify: ``None`` wherever its ``signal.alarm`` would fail."""
    if timeout_seconds is None or timeout_seconds <= 0 or os.name != "posix":
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    return int(timeout_seconds)


def _has_sympy_object(parsed: list[Any]) -> bool:
    return any(not isinstance(item, str) for item in parsed)


def math_equal(
    prediction: str,
    gold: str,
    *,
    max_chars: int = DEFAULT_MATH_MAX_CHARS,
    timeout_seconds: int | None = DEFAULT_MATH_TIMEOUT_SECONDS,
) -> bool:
    r"""Whether ``prediction`` and ``gold`` are the same mathematical answer (e.g. ``0.5`` and ``\frac{1}{2}``).

    Never raises on any string; safe to call from any thread (see the module docstring for the timeout rules).
    """
    normalized_prediction = normalize_math_text(prediction)
    normalized_gold = normalize_math_text(gold)
    if normalized_prediction and normalized_prediction == normalized_gold:
        return True
    if not normalized_prediction or not normalized_gold:
        return False
    if _too_costly(normalized_prediction, max_chars) or _too_costly(normalized_gold, max_chars):
        return False

    from math_verify import parse, verify  # lazy: sympy and antlr take about a second to import

    timeout = _signal_timeout(timeout_seconds)
    try:
        parsed_gold = parse(f"${_strip_delimiters(gold)}$", parsing_timeout=timeout)
        parsed_prediction = parse(f"${_strip_delimiters(prediction)}$", parsing_timeout=timeout)
        if not (_has_sympy_object(parsed_gold) and _has_sympy_object(parsed_prediction)):
            return False
        return bool(verify(parsed_gold, parsed_prediction, timeout_seconds=timeout))
    except Exception:  # math-verify's own errors (e.g. signals in a sub-interpreter): not equal
        return False
