"""The numbers of ``bench/learning.py``: per-run summaries, 95% intervals across seeds, ratios, the markdown table.

Pure functions over the rows of the runs' ``metrics.jsonl`` (no I/O, no plotting), so a unit test can check each
figure by hand (``tests/bench/test_learning_stats.py``).

Intervals are two-sided 95% Student-t intervals over seeds: ``mean ± t(0.975, n − 1) · s / √n`` with ``s`` the
sample standard deviation (n − 1 in the denominator). Each seed is one independent run, so n is the number of
seeds (3 by default: t = 4.303, wide on purpose — three seeds cannot claim more).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from statistics import mean, stdev
from typing import Any

MIN_HELD_OUT = 48
"""Held-out questions the study needs: with fewer, one question moves accuracy by more than two points."""

# t(0.975, df): two-sided 95% critical values of Student's t (any statistics table); between rows the smaller df
# is used (a slightly wider, conservative interval), beyond 120 the normal's 1.960.
_T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
    21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042,
    40: 2.021, 60: 2.000, 120: 1.980,
}  # fmt: skip

METRICS: tuple[tuple[str, str], ...] = (
    ("heldout_accuracy", "held-out accuracy"),
    ("heldout_reward", "held-out mean reward"),
    ("heldout_tool_calls", "held-out tool calls / question"),
    ("train_tool_calls", "train tool calls / trajectory"),
    ("train_reward", "train mean reward"),
)
"""The per-run figures, in table order (the held-out ones from the final evaluation, the train ones averaged
over every RL step's rollouts)."""


def t_critical(df: int) -> float:
    """t(0.975, df) for a two-sided 95% interval."""
    if df < 1:
        raise ValueError(f"a t-interval needs at least 2 values (df = {df}).")
    if df > 120:
        return 1.960
    return _T975[max(k for k in _T975 if k <= df)]


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its 95% t-interval half-width (``nan`` with a single value)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def t_interval(values: Sequence[float]) -> Interval:
    """Mean and 95% Student-t half-width of independent values (one per seed)."""
    if not values:
        raise ValueError("a t-interval needs at least one value.")
    if len(values) == 1:
        return Interval(float(values[0]), math.nan, 1)
    n = len(values)
    return Interval(mean(values), t_critical(n - 1) * stdev(values) / math.sqrt(n), n)


def latest_by_step(rows: Iterable[Mapping[str, Any]], phase: str) -> dict[int, Mapping[str, Any]]:
    """Rows of one phase keyed by step, the last one winning (a resumed run repeats the steps after its checkpoint)."""
    return {int(r["step"]): r for r in rows if r.get("phase") == phase}


@dataclass(frozen=True)
class RunSummary:
    """One (method, seed) run: its starting point (SFT-only), its final evaluation and its training rollouts."""

    method: str
    seed: int
    steps_done: int
    questions: int
    sft: Mapping[str, float]
    final: Mapping[str, float]
    heldout_by_step: Mapping[int, Mapping[str, float]] = field(default_factory=dict)
    train_by_step: Mapping[int, Mapping[str, float]] = field(default_factory=dict)


def _eval_figures(row: Mapping[str, Any]) -> dict[str, float]:
    return {
        "heldout_accuracy": float(row["pass@1"]),
        "heldout_reward": float(row.get("mean_reward", math.nan)),
        "heldout_tool_calls": float(row["tool_calls_per_episode"]),
    }


def summarize_run(method: str, seed: int, rows: Sequence[Mapping[str, Any]]) -> RunSummary:
    """A run's figures from its ``metrics.jsonl`` rows: the step-0 evaluation (the SFT model), the last one, and
    the mean over RL steps of the rollouts' tool calls per trajectory and reward."""
    evals = latest_by_step(rows, "eval")
    train = latest_by_step(rows, "train")
    if 0 not in evals or len(evals) < 2 or not train:
        raise ValueError(
            f"{method} seed {seed}: metrics.jsonl needs the step-0 evaluation, a final one and train rows "
            f"(found evaluations at steps {sorted(evals)} and {len(train)} train rows)."
        )
    heldout = {step: _eval_figures(row) for step, row in sorted(evals.items())}
    train_fig = {
        step: {"train_tool_calls": float(r["tool_calls_per_trajectory"]), "train_reward": float(r["reward_mean"])}
        for step, r in sorted(train.items())
    }
    last = max(evals)
    final = {
        **heldout[last],
        "train_tool_calls": mean(t["train_tool_calls"] for t in train_fig.values()),
        "train_reward": mean(t["train_reward"] for t in train_fig.values()),
    }
    return RunSummary(
        method, seed, steps_done=max(train) + 1, questions=int(evals[last].get("questions", 0)), sft=heldout[0],
        final=final, heldout_by_step=heldout, train_by_step=train_fig,
    )  # fmt: skip


def aggregate(runs: Sequence[RunSummary]) -> dict[str, dict[str, Interval]]:
    """Per method, each figure of :data:`METRICS` as a t-interval over its seeds."""
    methods: dict[str, list[RunSummary]] = {}
    for run in runs:
        methods.setdefault(run.method, []).append(run)
    return {
        method: {key: t_interval([r.final[key] for r in group]) for key, _ in METRICS}
        for method, group in methods.items()
    }


def sft_floor(runs: Sequence[RunSummary]) -> dict[str, Interval]:
    """The SFT-only floor: every run's step-0 evaluation of the shared starting model (greedy, so all alike
    unless the server is non-deterministic)."""
    keys = ("heldout_accuracy", "heldout_reward", "heldout_tool_calls")
    return {key: t_interval([r.sft[key] for r in runs]) for key in keys}


def curve(runs: Sequence[RunSummary], key: str) -> list[tuple[int, Interval]]:
    """A figure against the step over one method's seeds: held-out ones at the evaluated steps, train ones at
    every RL step (step s = the rollouts of the s-th update, 0-based); a step only some seeds reached counts those."""
    by_step: dict[int, list[float]] = {}
    for run in runs:
        source = run.heldout_by_step if key.startswith("heldout") else run.train_by_step
        for step, figures in source.items():
            by_step.setdefault(step, []).append(figures[key])
    return [(step, t_interval(values)) for step, values in sorted(by_step.items())]


def ratio(a: float, b: float) -> float:
    """a ÷ b (``inf`` or ``nan`` when b is 0)."""
    if b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)
    return a / b


@dataclass(frozen=True)
class Target:
    """One of the study's targets: ``name`` = the ratio of means, compared with ``bound`` by ``op``."""

    name: str
    value: float
    op: str  # ">=", "<=" or ">"
    bound: float
    separated: bool
    """Whether the two 95% intervals are disjoint on the target's side (else the outcome is within seed noise)."""

    @property
    def met(self) -> bool:
        if math.isnan(self.value):
            return False
        return {">=": self.value >= self.bound, "<=": self.value <= self.bound, ">": self.value > self.bound}[self.op]

    def line(self) -> str:
        value = "n/a (division by 0)" if math.isnan(self.value) else f"{self.value:.2f}"
        verdict = "met" if self.met else "not met"
        noise = "" if self.separated or math.isnan(self.value) else " (the 95% intervals overlap: within seed noise)"
        return f"{self.name} = {value} (target {self.op} {self.bound:.2f}): {verdict}{noise}"


def targets(agg: Mapping[str, Mapping[str, Interval]], floor: Mapping[str, Interval]) -> list[Target]:
    """The issue's targets, each a ratio of means: ARPO accuracy ≥ GRPO's, ARPO tool calls per trajectory ≤ 0.6×
    GRPO's, both accuracies above SFT-only. Only those whose methods were run."""
    out: list[Target] = []
    acc = "heldout_accuracy"
    arpo, grpo = agg.get("arpo"), agg.get("grpo")
    if arpo and grpo:
        a, g = arpo[acc], grpo[acc]
        out.append(Target("ARPO ÷ GRPO held-out accuracy", ratio(a.mean, g.mean), ">=", 1.0, a.low > g.high))
        a, g = arpo["train_tool_calls"], grpo["train_tool_calls"]
        out.append(
            Target("ARPO ÷ GRPO tool calls per trajectory", ratio(a.mean, g.mean), "<=", 0.6, a.high < 0.6 * g.low)
        )
    for name, figures in (("ARPO", arpo), ("GRPO", grpo)):
        if figures:
            m, s = figures[acc], floor[acc]
            separated = m.low > (s.high if not math.isnan(s.half_width) else s.mean)
            out.append(Target(f"{name} ÷ SFT-only held-out accuracy", ratio(m.mean, s.mean), ">", 1.0, separated))
    return out


# ---------------------------------------------------------------------------------------------------- formatting
def fmt(iv: Interval, key: str) -> str:
    """``58.3% ± 4.1`` for accuracy (± in points), ``+0.412 ± 0.050`` for rewards, ``1.25 ± 0.10`` for tool calls;
    the mean alone when there is no interval (one seed)."""
    if key.endswith("accuracy"):
        centre, half = f"{100 * iv.mean:.1f}%", f"{100 * iv.half_width:.1f}"
    elif key.endswith("reward"):
        centre, half = f"{iv.mean:+.3f}", f"{iv.half_width:.3f}"
    else:
        centre, half = f"{iv.mean:.2f}", f"{iv.half_width:.2f}"
    return centre if math.isnan(iv.half_width) else f"{centre} ± {half}"


METHOD_NAMES = {"sft": "SFT-only (the starting model)", "arpo": "ARPO", "grpo": "GRPO"}


def results_table(agg: Mapping[str, Mapping[str, Interval]], floor: Mapping[str, Interval]) -> list[str]:
    """Markdown: one row per method (SFT-only first), a column per figure of :data:`METRICS`."""
    lines = [
        "| method | runs | " + " | ".join(title for _, title in METRICS) + " |",
        "|:--|--:|" + "--:|" * len(METRICS),
    ]
    n = next(iter(floor.values())).n
    cells = [fmt(floor[key], key) if key in floor else "—" for key, _ in METRICS]
    lines.append(f"| {METHOD_NAMES['sft']} | {n} | " + " | ".join(cells) + " |")
    for method in sorted(agg, key=lambda m: (m not in ("grpo", "arpo"), m != "grpo", m)):
        figures = agg[method]
        n = figures["heldout_accuracy"].n
        cells = [fmt(figures[key], key) for key, _ in METRICS]
        lines.append(f"| {METHOD_NAMES.get(method, method)} | {n} | " + " | ".join(cells) + " |")
    return lines


def by_step_table(curves: Mapping[str, Sequence[tuple[int, Interval]]], key: str = "heldout_accuracy") -> list[str]:
    """Markdown: a figure at each evaluated step (rows), one column per method."""
    steps = sorted({s for c in curves.values() for s, _ in c})
    lines = ["| step | " + " | ".join(METHOD_NAMES.get(m, m) for m in curves) + " |", "|--:|" + "--:|" * len(curves)]
    for step in steps:
        cells = []
        for c in curves.values():
            at = dict(c).get(step)
            cells.append(fmt(at, key) if at is not None else "—")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines


def fraction_of(n: int, budget: int) -> str:
    """N as a fraction of M: ``M/4``, ``M/2``, ``3M/4`` (``M`` itself for N = M)."""
    f = Fraction(n, budget)
    top = "M" if f.numerator == 1 else f"{f.numerator}M"
    return top if f.denominator == 1 else f"{top}/{f.denominator}"


def ablation_table(by_n: Mapping[int, Mapping[str, Interval]], budget: int) -> list[str]:
    """Markdown: ARPO at each global-sample count N (rows), the figures of :data:`METRICS`."""
    lines = [f"| N (M = {budget}) | runs | " + " | ".join(t for _, t in METRICS) + " |"]
    lines.append("|:--|--:|" + "--:|" * len(METRICS))
    for n_global, figures in sorted(by_n.items()):
        cells = [fmt(figures[key], key) for key, _ in METRICS]
        label = f"{n_global} = {fraction_of(n_global, budget)}"
        lines.append(f"| {label} | {figures['heldout_accuracy'].n} | " + " | ".join(cells) + " |")
    return lines
