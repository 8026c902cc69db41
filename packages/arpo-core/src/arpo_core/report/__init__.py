"""What ``arpo train`` records and shows: metrics sinks (JSONL always; TensorBoard and W&B on request), plots of the
curves, and the final report (evaluations before and after, where the files went, time per phase).

Importing this package imports none of the optional packages (matplotlib, tensorboard, wandb) nor torch; each is
imported inside the function that needs it, and its absence is one sentence naming what to install.
"""

from __future__ import annotations

from arpo_core.report.metrics import (
    JsonlSink,
    MetricsSink,
    MetricValue,
    MissingPackageError,
    MultiSink,
    TensorBoardSink,
    WandbSink,
    make_sinks,
    read_metrics,
)
from arpo_core.report.plot import latest_rows, plot_runs, plot_training
from arpo_core.report.summary import evals_from_metrics, format_seconds, print_report, render_report, report_markdown

__all__ = [
    "JsonlSink",
    "MetricValue",
    "MetricsSink",
    "MissingPackageError",
    "MultiSink",
    "TensorBoardSink",
    "WandbSink",
    "evals_from_metrics",
    "format_seconds",
    "latest_rows",
    "make_sinks",
    "plot_runs",
    "plot_training",
    "print_report",
    "read_metrics",
    "render_report",
    "report_markdown",
]
