"""Pictures of a training run drawn from its ``metrics.jsonl``: one run over its steps, or several runs overlaid.

``plot_training`` draws, against the training step: the mean reward of the step's rollouts, the tool calls per
trajectory, and accuracy (the rollouts' own, with the evaluations — ``phase="eval"`` rows — marked at the steps they
ran and named by their label). ``plot_runs`` overlays runs (ARPO against GRPO, say) one panel per metric.

A resumed run appends to its file, so the steps between its last checkpoint and the crash appear twice; the rows
written later win. Non-finite values are drawn as gaps. matplotlib is imported only here, inside the functions,
and draws on its Agg canvas, so no display is needed and the caller's pyplot state is left alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from arpo_core.report.metrics import MissingPackageError, read_metrics

__all__ = ["MATPLOTLIB_MISSING", "latest_rows", "plot_runs", "plot_training", "series"]

MATPLOTLIB_MISSING = "plotting needs the matplotlib package: pip install matplotlib"

TITLES = {
    "reward_mean": "mean reward",
    "accuracy": "accuracy",
    "tool_calls_per_trajectory": "tool calls / trajectory",
    "pass@1": "pass@1 (eval)",
    "mean_f1": "mean F1 (eval)",
    "tool_calls_per_episode": "tool calls / question (eval)",
    "format_errors": "format errors (eval)",
    "loss": "loss",
    "grad_norm": "gradient norm",
    "tokens_per_second": "tokens / second",
}

EVAL_METRICS = ("pass@1", "mean_f1", "tool_calls_per_episode", "format_errors")


def _figure(panels: int) -> tuple[Any, list[Any]]:
    """A matplotlib figure on the Agg canvas with ``panels`` stacked axes sharing the step axis."""
    try:  # the ignores keep mypy clean where matplotlib (an optional extra) is not installed
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # type: ignore[import-not-found, unused-ignore]
        from matplotlib.figure import Figure  # type: ignore[import-not-found, unused-ignore]
        from matplotlib.ticker import MaxNLocator  # type: ignore[import-not-found, unused-ignore]
    except ImportError as err:
        raise MissingPackageError(MATPLOTLIB_MISSING) from err
    fig = Figure(figsize=(8.0, 2.4 * panels + 0.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0])
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("step")
    return fig, axes


def _save(fig: Any, png: str | os.PathLike[str]) -> Path:
    path = Path(png)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def latest_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One row per (phase, step, label), the last written: a resumed run's repeated steps replace the first tries."""
    keep: dict[tuple[Any, Any, Any], Mapping[str, Any]] = {}
    for row in rows:
        key = (row.get("phase", "train"), row.get("step"), row.get("label"))
        keep.pop(key, None)  # re-insert so the order follows the latest write
        keep[key] = row
    return list(keep.values())


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else math.nan


def series(
    rows: Sequence[Mapping[str, Any]], metric: str, *, phase: str = "train"
) -> tuple[list[int], list[float], list[str]]:
    """(steps, values, labels) of ``metric`` in ``phase`` rows, ordered by step; non-finite values become NaN gaps."""
    found = []
    for i, row in enumerate(rows):
        if row.get("phase", "train") != phase or not isinstance(row.get("step"), int):
            continue
        value = _number(row.get(metric))
        if value is not None:
            found.append((row["step"], i, value, str(row.get("label", ""))))
    found.sort()
    return [f[0] for f in found], [f[2] for f in found], [f[3] for f in found]


def _rolling(values: Sequence[float], window: int) -> list[float]:
    """The mean of the last ``window`` finite values at each point (NaN where there is none yet)."""
    out = []
    for i in range(len(values)):
        chunk = [v for v in values[max(0, i - window + 1) : i + 1] if math.isfinite(v)]
        out.append(sum(chunk) / len(chunk) if chunk else math.nan)
    return out


def _train_line(ax: Any, steps: Sequence[int], values: Sequence[float], label: str, color: str | None = None) -> None:
    """A step series: the raw values, and their running mean when there are enough points for it to help."""
    if len(values) >= 10:
        window = max(3, len(values) // 10)
        (raw,) = ax.plot(steps, values, color=color, alpha=0.35, linewidth=1.0)
        ax.plot(
            steps,
            _rolling(values, window),
            color=raw.get_color(),
            linewidth=2.0,
            label=f"{label} (running mean of {window})",
        )
    else:
        ax.plot(steps, values, color=color, marker="o", markersize=3, linewidth=1.5, label=label)


def _eval_marks(ax: Any, steps: Sequence[int], values: Sequence[float], labels: Sequence[str], name: str) -> None:
    """Evaluations as diamonds at the steps they ran, each named by its label."""
    ax.plot(steps, values, linestyle="none", marker="D", markersize=6, color="black", label=name)
    for i, (x, y, text) in enumerate(zip(steps, values, labels, strict=True)):
        if text and math.isfinite(y):
            ax.annotate(
                text, (x, y), xytext=(6, 6 + 10 * (i % 2)), textcoords="offset points", fontsize=8
            )  # alternate heights: "base" and "after SFT" often share step 0


def plot_training(
    metrics_jsonl: str | os.PathLike[str], png: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """A PNG of one run's training curves (reward, tool calls, accuracy with evaluations marked); returns its path."""
    rows = latest_rows(read_metrics(metrics_jsonl))
    reward = series(rows, "reward_mean")
    tools = series(rows, "tool_calls_per_trajectory")
    accuracy = series(rows, "accuracy")
    evals = series(rows, "pass@1", phase="eval")
    eval_tools = series(rows, "tool_calls_per_episode", phase="eval")
    if not (reward[0] or tools[0] or accuracy[0] or evals[0]):
        raise ValueError(
            f"{metrics_jsonl} has no train rows with reward_mean, tool_calls_per_trajectory or accuracy, "
            "and no evaluations: nothing to plot."
        )
    show_accuracy = bool(accuracy[0] or evals[0])
    fig, axes = _figure(3 if show_accuracy else 2)
    fig.suptitle(title or f"training run: {Path(metrics_jsonl).parent.name or Path(metrics_jsonl).name}")

    ax = axes[0]
    ax.set_ylabel("mean reward")
    if reward[0]:
        _train_line(ax, reward[0], reward[1], "train rollouts")
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no reward_mean", ha="center", transform=ax.transAxes)

    ax = axes[1]
    ax.set_ylabel("tool calls / trajectory")
    if tools[0]:
        _train_line(ax, tools[0], tools[1], "train rollouts")
    if eval_tools[0]:
        _eval_marks(ax, eval_tools[0], eval_tools[1], eval_tools[2], "evaluation (per question)")
    if tools[0] or eval_tools[0]:
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no tool_calls_per_trajectory", ha="center", transform=ax.transAxes)

    if show_accuracy:
        ax = axes[2]
        ax.set_ylabel("accuracy")
        if accuracy[0]:
            _train_line(ax, accuracy[0], accuracy[1], "train rollouts")
        if evals[0]:
            _eval_marks(ax, evals[0], evals[1], evals[2], "evaluation pass@1")
        ax.set_ylim(-0.02, 1.05)
        ax.legend(loc="best", fontsize=8)
    return _save(fig, png)


def plot_runs(
    runs: Mapping[str, str | os.PathLike[str]],
    png: str | os.PathLike[str],
    metrics: Sequence[str] = ("reward_mean", "tool_calls_per_trajectory"),
    *,
    title: str | None = None,
) -> Path:
    """A PNG overlaying several runs (e.g. ``{"ARPO": path1, "GRPO": path2}``), one panel per metric.

    A metric is drawn from the runs' train rows; one that only evaluations carry (``pass@1``, ``mean_f1`` …) is
    drawn from their eval rows instead, as points at the steps they ran.
    """
    if not runs:
        raise ValueError("plot_runs needs at least one run: a mapping of name to metrics.jsonl path.")
    if not metrics:
        raise ValueError("plot_runs needs at least one metric name to draw.")
    data = {name: latest_rows(read_metrics(path)) for name, path in runs.items()}
    fig, axes = _figure(len(metrics))
    fig.suptitle(title or " vs ".join(runs))
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for ax, metric in zip(axes, metrics, strict=True):
        ax.set_ylabel(TITLES.get(metric, metric))
        drawn = False
        for (name, rows), color in zip(data.items(), colors, strict=True):
            steps, values, _ = series(rows, metric)
            if steps:
                _train_line(ax, steps, values, name, color)
                drawn = True
                continue
            steps, values, _ = series(rows, metric, phase="eval")
            if steps:
                ax.plot(steps, values, color=color, marker="D", linestyle="--", label=f"{name} (eval)")
                drawn = True
        if drawn:
            ax.legend(loc="best", fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no run has {metric}", ha="center", transform=ax.transAxes)
    return _save(fig, png)
