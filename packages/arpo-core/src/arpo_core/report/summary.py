"""The report ``arpo train`` ends with: how each evaluation went, where the files went, how long each phase took.

``evals`` maps an evaluation's label ("base", "after SFT", "after ARPO" — on the held-out questions) to its summary,
as ``EvalReport.summary()`` gives it or as the ``phase="eval"`` rows of ``metrics.jsonl`` hold it
(:func:`evals_from_metrics`). Numbers are formatted the same way everywhere:

=========================  =========================================  ===========
column                     from the summary key                       shown as
=========================  =========================================  ===========
mean reward (when present)  ``mean_reward`` (the training reward)     ``+0.850``
accuracy (pass@1)          ``pass@1`` (else ``accuracy``), a fraction  ``42.5%``
mean F1                    ``mean_f1``                                ``0.613``
tool calls / question      ``tool_calls_per_episode``                 ``1.25``
format errors              ``format_errors`` (a count)                ``3``
questions (when present)   ``questions``                              ``200``
=========================  =========================================  ===========

Where the summary has a 95% interval (``<key>_low`` / ``<key>_high``, as ``EvalReport.summary()`` gives for
accuracy, mean reward and tool calls — see :mod:`arpo_core.report.intervals`) it follows the value in brackets:
``58.3% [44.3, 71.0]``. A value that is absent shows as ``-``, a non-finite one as ``nan``/``inf``. Durations:
``12.3s`` under a minute, ``4m 05s`` under an hour, ``1h 02m 03s`` beyond. With two evaluations or more, a line
compares the first with the last (accuracy in percentage points), and when there is an ``after SFT`` evaluation
before the last, a second line compares it with the last: what RL added over the cold start. :func:`render_report`
gives plain text (print it with rich using ``markup=False``, or call :func:`print_report`); :func:`report_markdown`
gives the same as Markdown for a README.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from arpo_core.report.metrics import read_metrics

__all__ = [
    "evals_from_metrics",
    "format_seconds",
    "print_report",
    "render_report",
    "report_markdown",
]

Evals = Mapping[str, Mapping[str, Any]]
PathsArg = Mapping[str, str | os.PathLike[str]] | None
TimingsArg = Mapping[str, float] | None


def _value(summary: Mapping[str, Any], keys: Sequence[str]) -> float | None:
    for key in keys:
        value = summary.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _nonfinite(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _fmt(spec: str) -> Callable[[float | None], str]:
    def fmt(x: float | None) -> str:
        if x is None:
            return "-"
        if not math.isfinite(x):
            return _nonfinite(x)
        return format(x, spec)

    return fmt


def _percent(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if math.isfinite(x) else _nonfinite(x)


def _count(x: float | None) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return _nonfinite(x)
    return f"{x:.0f}" if x.is_integer() else f"{x:.2f}"


# (header, summary keys tried in order, formatter)
COLUMNS: tuple[tuple[str, tuple[str, ...], Callable[[float | None], str]], ...] = (
    ("accuracy (pass@1)", ("pass@1", "accuracy"), _percent),
    ("mean F1", ("mean_f1",), _fmt(".3f")),
    ("tool calls / question", ("tool_calls_per_episode",), _fmt(".2f")),
    ("format errors", ("format_errors",), _count),
)
QUESTIONS = ("questions", ("questions",), _count)
REWARD = ("mean reward", ("mean_reward",), _fmt("+.3f"))


def _columns(evals: Evals) -> list[tuple[str, tuple[str, ...], Callable[[float | None], str]]]:
    cols = list(COLUMNS)
    if any(_value(s, REWARD[1]) is not None for s in evals.values()):
        cols.insert(0, REWARD)
    if any(_value(s, QUESTIONS[1]) is not None for s in evals.values()):
        cols.append(QUESTIONS)
    return cols


def _with_interval(summary: Mapping[str, Any], keys: Sequence[str], fmt: Callable[[float | None], str]) -> str:
    """The value, then ``[low, high]`` when the summary has that key's 95% interval."""
    text = fmt(_value(summary, keys))
    for key in keys:
        low, high = _value(summary, [f"{key}_low"]), _value(summary, [f"{key}_high"])
        if low is not None and high is not None and key in summary:
            bounds = [fmt(x).removesuffix("%") for x in (low, high)]
            return f"{text} [{bounds[0]}, {bounds[1]}]"
    return text


def _rows(evals: Evals) -> tuple[list[str], list[list[str]]]:
    cols = _columns(evals)
    header = ["evaluation", *(c[0] for c in cols)]
    body = [[label, *(_with_interval(s, keys, fmt) for _, keys, fmt in cols)] for label, s in evals.items()]
    return header, body


def format_seconds(seconds: float) -> str:
    """``12.3s`` under a minute, ``4m 05s`` under an hour, ``1h 02m 03s`` beyond."""
    if not math.isfinite(seconds):
        return _nonfinite(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def _timing_rows(timings: Mapping[str, float]) -> list[tuple[str, str]]:
    """Each phase, then the total: the one given under ``total``, else the sum of the phases."""
    total_key = next((k for k in timings if k.strip().lower() == "total"), None)
    rows = [(k, format_seconds(float(v))) for k, v in timings.items() if k != total_key]
    total = float(timings[total_key]) if total_key is not None else sum(float(v) for v in timings.values())
    if rows or total_key is not None:
        rows.append(("total", format_seconds(total)))
    return rows


def _changes(evals: Evals) -> list[str]:
    """First → last, and ``after SFT`` → last when the cold start was evaluated and is not the first."""
    labels = list(evals)
    pairs = [(labels[0], labels[-1])] if len(labels) >= 2 else []
    if "after SFT" in labels[1:-1]:
        pairs.append(("after SFT", labels[-1]))
    return [line for a, b in pairs if (line := _change({a: evals[a], b: evals[b]}))]


def _change(evals: Evals) -> str | None:
    """'base → after ARPO: mean reward -0.900 → +0.500 (+1.400), accuracy 20.0% → 45.0% (+25.0 points), tool calls
    / question 0.40 → 1.30 (+0.90)' (the reward when both evaluations have one)."""
    if len(evals) < 2:
        return None
    labels = list(evals)
    first, last = evals[labels[0]], evals[labels[-1]]
    changes: tuple[tuple[tuple[str, ...], Callable[[float, float], str]], ...] = (
        (REWARD[1], lambda a, b: f"mean reward {a:+.3f} → {b:+.3f} ({b - a:+.3f})"),
        (("pass@1", "accuracy"), lambda a, b: f"accuracy {_percent(a)} → {_percent(b)} ({100 * (b - a):+.1f} points)"),
        (("tool_calls_per_episode",), lambda a, b: f"tool calls / question {a:.2f} → {b:.2f} ({b - a:+.2f})"),
    )
    parts = []
    for keys, describe in changes:
        a, b = _value(first, keys), _value(last, keys)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
            parts.append(describe(a, b))
    if not parts:
        return None
    return f"{labels[0]} → {labels[-1]}: " + ", ".join(parts)


def _text_table(header: Sequence[str], body: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return (indent + "  ".join([first, *rest])).rstrip()

    return [line(header), indent + "  ".join("-" * w for w in widths), *(line(r) for r in body)]


def _pairs(pairs: Sequence[tuple[str, str]], indent: str = "  ") -> list[str]:
    width = max((len(k) for k, _ in pairs), default=0)
    return [f"{indent}{k.ljust(width)}  {v}" for k, v in pairs]


def render_report(
    evals: Evals,
    *,
    paths: PathsArg = None,
    timings: TimingsArg = None,
    title: str = "arpo train: report",
) -> str:
    """The final report as plain text: evaluations table, first-vs-last change, files, wall time per phase."""
    lines = [title, ""]
    if evals:
        lines.append("Evaluations (held-out questions)")
        lines += _text_table(*_rows(evals))
        changes = _changes(evals)
        if changes:
            lines += ["", *("  " + change for change in changes)]
    else:
        lines.append("Evaluations: none were run.")
    if paths:
        lines += ["", "Files"]
        lines += _pairs([(k, str(v)) for k, v in paths.items()])
    timing_rows = _timing_rows(timings or {})
    if timing_rows:
        lines += ["", "Wall time"]
        lines += _pairs(timing_rows)
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def report_markdown(
    evals: Evals,
    *,
    paths: PathsArg = None,
    timings: TimingsArg = None,
) -> str:
    """The evaluations as a Markdown table (to paste in a README), then the files and wall time when given."""
    header, body = _rows(evals)
    lines = [
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "|:--|" + "--:|" * (len(header) - 1),
        *("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in body),
    ]
    changes = _changes(evals)
    if changes:
        for change in changes:
            lines += ["", change]
    if paths:
        lines += ["", "| file | path |", "|:--|:--|"]
        lines += [f"| {_md_cell(k)} | `{_md_cell(str(v))}` |" for k, v in paths.items()]
    timing_rows = _timing_rows(timings or {})
    if timing_rows:
        lines += ["", "| phase | wall time |", "|:--|--:|"]
        lines += [f"| {_md_cell(k)} | {v} |" for k, v in timing_rows]
    return "\n".join(lines) + "\n"


def print_report(
    evals: Evals,
    *,
    paths: PathsArg = None,
    timings: TimingsArg = None,
    title: str = "arpo train: report",
    console: Any = None,
) -> None:
    """The report on a rich console (stdout by default): the same content as :func:`render_report`, as tables."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = console if console is not None else Console()
    out.print(Text(title, style="bold"))
    if evals:
        header, body = _rows(evals)
        table = Table(title="Evaluations (held-out questions)", title_justify="left")
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for row in body:
            table.add_row(*(Text(c) for c in row))
        out.print(table)
        for change in _changes(evals):
            out.print(Text(change))
    else:
        out.print(Text("Evaluations: none were run."))
    for name, pairs in (
        ("Files", [(k, str(v)) for k, v in (paths or {}).items()]),
        ("Wall time", _timing_rows(timings or {})),
    ):
        if not pairs:
            continue
        table = Table(title=name, title_justify="left", show_header=False, box=None, padding=(0, 2))
        table.add_column(justify="left")
        table.add_column(justify="right" if name == "Wall time" else "left")
        for k, v in pairs:
            table.add_row(Text(k), Text(v))
        out.print(table)


def evals_from_metrics(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The ``phase="eval"`` rows of a metrics JSONL file by label (the last row of each label), in order of first
    appearance; a row without a label is named ``step <n>``."""
    out: dict[str, dict[str, Any]] = {}
    for row in read_metrics(path):
        if row.get("phase") != "eval":
            continue
        label = row.get("label")
        name = str(label) if label not in (None, "") else f"step {row.get('step')}"
        out[name] = {k: v for k, v in row.items() if k not in ("phase", "time", "label")}
    return out
