"""Where ``arpo train`` sends its numbers: a JSONL file always, TensorBoard and W&B when asked for.

One row per call: ``sink.log(step, {"reward_mean": 0.4, ...}, phase="train")``. Train rows carry the step's
rollout and optimiser numbers; ``phase="eval"`` rows carry an evaluation's summary (``pass@1``, ``mean_f1``,
``tool_calls_per_episode``, ``format_errors``) and a ``label`` string ("base", "after SFT", "after ARPO").

The JSONL file (``metrics.jsonl`` in the run folder) is the record every other view is drawn from: one JSON object a
line, ``{"step", "phase", "time", ...metrics}``, flushed as it is written and appended to, so a resumed run carries
on in the same file. JSON has no NaN or infinity, so non-finite floats are written as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` (JavaScript's spelling; the file stays strict JSON that ``jq`` reads) and
:func:`read_metrics` turns them back into floats. String fields (a label) are kept as they are; the one thing that
cannot round-trip is a string field whose value is exactly one of those three spellings — it reads back as a float.

Optional packages are imported only inside the sink that needs them, so ``import arpo_core.report`` stays light; a
sink asked for without its package fails with one sentence naming the package to install. TensorBoard and W&B get
every numeric metric of a row (W&B the words too), under ``<phase>/<name>``.

Train rows: the metrics of one RL step, by name
-----------------------------------------------
The one place they are defined. ``rollout``: ``runtime.train_loop.group_metrics``, from the step's rollout trees
(numpy only); ``loop``: the ``TrainLoop`` around the step; ``trainer``: the backend's ``ppo_step``. A metric with
nothing to measure on a step (no window, no behaviour logprob, no KL reference) is left out of that row, not 0.
Token means over the trainer's loss tokens count every token of every update, micro-batch and rank once, so how
micro-batches and ranks split the step does not change them; with one mini-batch and one epoch (the paper) the
ratio is 1 and the clip fractions are 0.

    name                           from     meaning
    groups                         rollout  prompt groups trained on this step (stale ones already dropped)
    trajectories                   rollout  their trajectories (M per group)
    reward_mean                    rollout  mean reward over the step's trajectories (a missing reward counts 0)
    reward_std                     rollout  population standard deviation of those rewards
    zero_variance_group_frac       rollout  fraction of groups whose rewards are all equal: all advantages 0, so
                                            no learning signal from that group
    accuracy                       rollout  fraction of trajectories with answer_score ≥ 1
    format_ok                      rollout  fraction of trajectories that passed the format check
    tool_calls_per_trajectory      rollout  tool calls run (one on a shared prefix once) per trajectory
    branches                       rollout  trajectories that are branches (origin ``branch``)
    branches_per_trajectory        rollout  branches / trajectories
    branches_per_group             rollout  branches / groups
    global_samples_mean            rollout  mean N of the groups: trajectories started from the bare prompt (fills
                                            not counted; per group under AEPO's dynamic_global_samples)
    global_samples_min             rollout  smallest N of the step's groups
    global_samples_max             rollout  largest N of the step's groups
    entropy_window_first_mean      rollout  mean entropy window W (normalised by ln|V|, reduced by
                                            ``entropy.reduction``) of first segments, those generated right after
                                            the prompt: H_initial
    entropy_window_after_tool_mean rollout  mean W of segments generated right after a tool result: H_t
    entropy_window_after_tool_gap  rollout  after_tool − first: positive when entropy rises after tool results
    response_tokens                rollout  response tokens summed over trajectories (tool results included)
    response_tokens_unique         rollout  response tokens once per tree node (shared prefixes once)
    generated_tokens               rollout  tokens the policy generated: each tree node once, tool results excluded
    trained_tokens                 rollout  generated tokens summed over trajectories (one epoch's loss tokens)
    rollout_group_seconds          rollout  mean wall time of one group's rollout
    groups_dropped_stale           loop     groups dropped as older than max_staleness policy versions
    staleness_mean                 loop     mean policy-version lag of the trained groups
    staleness_max                  loop     largest such lag
    rollout_seconds                loop     how long the step waited for its groups (async: overlaps training)
    rollout_wall_seconds           loop     sync: the step's rollout; async: time since the previous step's groups
                                            were in (the engine generates all along)
    rollout_tokens_per_second      loop     generated_tokens / rollout_wall_seconds
    train_step_seconds             loop     wall time of ``Trainer.train_step``
    train_tokens_per_second        loop     trained_tokens / train_step_seconds
    publish_seconds                loop     wall time of publishing the new weights to inference
    train_seconds                  loop     train_step + publish, as the loop waited for them
    tokens_per_second              loop     response_tokens / train_seconds (the plot's)
    prompts_consumed               loop     prompts handed to the engine so far (the resume position)
    loss                           trainer  the objective, mean over the step's optimiser updates
    pg_loss                        trainer  its policy-gradient part, the same way
    kl                             trainer  token mean of the KL estimate to the reference (only with kl_coef > 0,
                                            which loads the reference)
    entropy                        trainer  token mean of the policy's entropy (only when the loss computes it)
    clip_frac_high                 trainer  fraction of loss tokens clipped above: A > 0 and r > 1 + ε_high
    clip_frac_low                  trainer  fraction clipped below: A < 0 and r < 1 − ε_low
    clip_frac_dual                 trainer  fraction dual-clipped: A < 0 and r > c
    ratio_mean                     trainer  token mean of r = π_θ / π_old
    ppo_kl                         trainer  token mean of log π_old − log π_θ (k1, verl's)
    approx_kl                      trainer  token mean of r − 1 − log r (k3 of π_old vs π_θ)
    importance_weight_mean         trainer  token mean of the behaviour weight w applied (1 where unknown)
    importance_weight_max          trainer  largest w applied
    importance_weight_raw_max      trainer  largest exp(logp_old − logp_behav) before the cap, over tokens with a
                                            behaviour logprob
    importance_truncated_frac      trainer  fraction of loss tokens whose raw weight exceeded importance_cap
                                            (truncated, or zeroed under ``mask``; 0 with importance_mode off)
    behaviour_known_frac           trainer  fraction of loss tokens with a behaviour logprob from the server
    loss_tokens                    trainer  loss tokens of the step (one epoch)
    grad_norm                      trainer  gradient norm before clipping, mean over updates
    lr                             trainer  learning rate of the last update
    updates                        trainer  optimiser updates of the step
    policy_version                 trainer  the policy version after the step
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import numbers
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, runtime_checkable

__all__ = [
    "JsonlSink",
    "MetricValue",
    "MetricsSink",
    "MissingPackageError",
    "MultiSink",
    "TensorBoardSink",
    "WandbSink",
    "make_sinks",
    "read_metrics",
]

log = logging.getLogger(__name__)

MetricValue = float | int | str | bool | None
"""A metric is a number; a few fields are words (an evaluation's ``label``); ``None`` is written as ``null``."""

RESERVED = ("step", "phase", "time")
"""Keys every JSONL row has; a metric of the same name would overwrite one, so it is refused."""

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

TENSORBOARD_MISSING = "--tensorboard needs the tensorboard package: pip install tensorboard"
WANDB_MISSING = "--wandb needs the wandb package: pip install wandb"


class MissingPackageError(ImportError):
    """An optional view (TensorBoard, W&B, the plot) was asked for without its package; the message says which."""


@runtime_checkable
class MetricsSink(Protocol):
    """Something that records a step's metrics; ``close`` flushes and releases it (calling it twice is harmless)."""

    def log(self, step: int, metrics: Mapping[str, MetricValue], *, phase: str = "train") -> None: ...

    def close(self) -> None: ...


def _clean(key: str, value: object) -> MetricValue:
    """A JSON-ready value: numpy scalars become Python numbers, anything else non-numeric is refused."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    try:  # a 0-d array or a one-element tensor
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(
            f"metric {key!r} is a {type(value).__name__} ({value!r}); metrics must be numbers or strings."
        ) from None


def _row(step: int, metrics: Mapping[str, object], phase: str) -> dict[str, MetricValue]:
    clash = [k for k in metrics if k in RESERVED]
    if clash:
        raise ValueError(f"metric name {clash[0]!r} is reserved for the row itself ({', '.join(RESERVED)}); rename it.")
    row: dict[str, MetricValue] = {"step": int(step), "phase": phase, "time": time.time()}
    row.update((k, _clean(k, v)) for k, v in metrics.items())
    return row


def _encode(value: MetricValue) -> MetricValue:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    return value


def _numeric(metrics: Mapping[str, MetricValue]) -> Iterable[tuple[str, float]]:
    """The entries a scalar dashboard can draw: numbers (bools as 0/1), not words or nulls."""
    for key, value in metrics.items():
        if value is None or isinstance(value, str):
            continue
        yield key, float(value)


class JsonlSink:
    """``metrics.jsonl``: one JSON object a line, flushed as written; an existing file is appended to (resume)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A run killed in the middle of a line leaves it unterminated; start the resumed rows on a line of their own.
        needs_newline = False
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) != b"\n"
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        if needs_newline:
            self._file.write("\n")
            self._file.flush()

    def log(self, step: int, metrics: Mapping[str, MetricValue], *, phase: str = "train") -> None:
        if self._file is None:
            raise ValueError(f"the metrics file {self.path} is closed.")
        row = {k: _encode(v) for k, v in _row(step, metrics, phase).items()}
        self._file.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: str | os.PathLike[str], *, strict: bool = False) -> list[dict[str, Any]]:
    """The rows of a metrics JSONL file in the order written, non-finite floats restored.

    A run killed while writing leaves at most one broken line behind; it is skipped unless ``strict``, which raises
    ``ValueError`` naming the line. Blank lines are skipped.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"the metrics file {p} does not exist.")
    rows: list[dict[str, Any]] = []
    with p.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                if strict:
                    raise ValueError(f"{p}:{number} is not a JSON object ({err.msg}).") from None
                continue
            if not isinstance(row, dict):
                if strict:
                    raise ValueError(f"{p}:{number} is a JSON {type(row).__name__}, not an object.")
                continue
            rows.append({k: _decode(v) for k, v in row.items()})
    return rows


def _import(module: str, message: str) -> Any:
    """``importlib.import_module`` whose failure is the one sentence the user needs (the cause kept as context)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingPackageError(message) from err


class TensorBoardSink:
    """TensorBoard event files under ``logdir``, one scalar per numeric metric, tagged ``<phase>/<name>``.

    Written with the ``tensorboard`` package's own event writer (what ``torch.utils.tensorboard`` wraps), so neither
    torch nor TensorFlow is needed; ``tensorboardX`` is used when only it is installed. String fields are not scalars
    and are left to the JSONL file.
    """

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._writer: Any = None
        self._x: Any = None  # a tensorboardX SummaryWriter when that is the backend
        try:
            writer = importlib.import_module("tensorboard.summary.writer.event_file_writer")
            self._event_pb2 = importlib.import_module("tensorboard.compat.proto.event_pb2")
            self._summary_pb2 = importlib.import_module("tensorboard.compat.proto.summary_pb2")
        except ImportError:
            self._x = _import("tensorboardX", TENSORBOARD_MISSING).SummaryWriter(logdir=str(self.logdir))
        else:
            self._writer = writer.EventFileWriter(str(self.logdir), flush_secs=10)

    def log(self, step: int, metrics: Mapping[str, MetricValue], *, phase: str = "train") -> None:
        now = time.time()
        values = [(f"{phase}/{k}", v) for k, v in _numeric({k: _clean(k, v) for k, v in metrics.items()})]
        if self._x is not None:
            for tag, value in values:
                self._x.add_scalar(tag, value, global_step=int(step), walltime=now)
            self._x.flush()
            return
        if self._writer is None:
            raise ValueError(f"the TensorBoard writer for {self.logdir} is closed.")
        summary = self._summary_pb2.Summary(
            value=[self._summary_pb2.Summary.Value(tag=tag, simple_value=value) for tag, value in values]
        )
        self._writer.add_event(self._event_pb2.Event(wall_time=now, step=int(step), summary=summary))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._x is not None:
            self._x.close()
            self._x = None


class WandbSink:
    """A Weights & Biases run; metrics logged as ``<phase>/<name>`` against their own ``<phase>/step`` axis.

    Each phase has its own step axis, so an evaluation logged at a step already passed never trips W&B's
    "steps must increase" rule. ``WANDB_MODE=offline`` (or ``disabled``) in the environment is honoured, as are W&B's
    other variables (``WANDB_ENTITY``, ``WANDB_API_KEY`` …). Given ``dir`` (the run folder), the run's id is kept in
    ``dir/wandb-run-id`` and a resumed training run continues the same W&B run.
    """

    def __init__(
        self,
        project: str,
        run_name: str | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        dir: str | os.PathLike[str] | None = None,
    ) -> None:
        wandb = _import("wandb", WANDB_MISSING)
        kwargs: dict[str, Any] = {"project": project, "name": run_name, "config": dict(config or {})}
        mode = os.environ.get("WANDB_MODE")
        if mode:
            kwargs["mode"] = mode
        id_file = None
        if dir is not None:
            # W&B writes its own files under dir/wandb; the run id kept beside them lets a resumed run continue it.
            Path(dir).mkdir(parents=True, exist_ok=True)
            kwargs["dir"] = str(dir)
            id_file = Path(dir) / "wandb-run-id"
            if id_file.is_file() and id_file.read_text().strip():
                kwargs["id"] = id_file.read_text().strip()
                kwargs["resume"] = "allow"
        self._run: Any = wandb.init(**kwargs)
        if id_file is not None and getattr(self._run, "id", None):
            id_file.write_text(str(self._run.id) + "\n")
        self._phases: set[str] = set()

    def log(self, step: int, metrics: Mapping[str, MetricValue], *, phase: str = "train") -> None:
        if self._run is None:
            raise ValueError("the W&B run is closed.")
        if phase not in self._phases:
            self._run.define_metric(f"{phase}/step")
            self._run.define_metric(f"{phase}/*", step_metric=f"{phase}/step")
            self._phases.add(phase)
        data: dict[str, Any] = {f"{phase}/{k}": _clean(k, v) for k, v in metrics.items()}
        data[f"{phase}/step"] = int(step)
        self._run.log(data)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


class MultiSink:
    """Several sinks as one. The first (the JSONL record) must work; a later one that fails is logged and dropped.

    A dashboard that loses its connection should not stop a training run whose JSONL record is intact.
    ``paths`` names what was written where (``metrics``, ``tensorboard``) for the final report.
    """

    def __init__(self, sinks: Sequence[MetricsSink], *, paths: Mapping[str, Path] | None = None) -> None:
        if not sinks:
            raise ValueError("MultiSink needs at least one sink.")
        self.sinks: list[MetricsSink] = list(sinks)
        self.paths: dict[str, Path] = dict(paths or {})

    def log(self, step: int, metrics: Mapping[str, MetricValue], *, phase: str = "train") -> None:
        primary, *rest = self.sinks
        primary.log(step, metrics, phase=phase)
        for sink in rest:
            try:
                sink.log(step, metrics, phase=phase)
            except Exception as err:  # best effort: the JSONL file already holds the row
                log.warning(
                    "%s failed (%s: %s); it is switched off for this run.", type(sink).__name__, type(err).__name__, err
                )
                self.sinks.remove(sink)
                try:
                    sink.close()
                except Exception:  # already broken; closing is a courtesy
                    log.debug("closing %s failed", type(sink).__name__, exc_info=True)

    def close(self) -> None:
        errors: list[BaseException] = []
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as err:
                errors.append(err)
        if errors:
            raise errors[0]

    def __enter__(self) -> MultiSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def make_sinks(
    run_dir: str | os.PathLike[str],
    *,
    tensorboard: bool = False,
    wandb: bool | str = False,
    config: Mapping[str, Any] | None = None,
    run_name: str | None = None,
) -> MultiSink:
    """The sinks of a training run: ``<run_dir>/metrics.jsonl`` always, ``<run_dir>/tensorboard/`` if asked for, and a
    W&B run (project ``arpo``, or the name ``wandb`` gives) if asked for.

    A missing optional package raises :class:`MissingPackageError` before any file is created, with one sentence,
    e.g. "--tensorboard needs the tensorboard package: pip install tensorboard".
    """
    root = Path(run_dir)
    # Check the optional packages first: a refused run should leave nothing behind.
    if tensorboard:
        try:
            importlib.import_module("tensorboard.summary.writer.event_file_writer")
        except ImportError:
            _import("tensorboardX", TENSORBOARD_MISSING)
    if wandb is not False:
        _import("wandb", WANDB_MISSING)
        if isinstance(wandb, str) and not wandb.strip():
            raise ValueError("--wandb was given an empty project name; pass a name or leave the value out.")
    metrics_path = root / "metrics.jsonl"
    sinks: list[MetricsSink] = [JsonlSink(metrics_path)]
    paths = {"metrics": metrics_path}
    try:
        if tensorboard:
            sinks.append(TensorBoardSink(root / "tensorboard"))
            paths["tensorboard"] = root / "tensorboard"
        if wandb is not False:
            project = wandb if isinstance(wandb, str) else "arpo"
            sinks.append(WandbSink(project, run_name or root.name, config, dir=root))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return MultiSink(sinks, paths=paths)
