"""Metrics sinks: the JSONL record (round trip, non-finite floats, words, resume), TensorBoard, W&B, make_sinks."""

from __future__ import annotations

import json
import math
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arpo_core.report import (
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


def _block(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    """Make ``import <package>`` (and its submodules) fail as if the package were not installed."""
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            monkeypatch.delitem(sys.modules, name)
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)


def _strict_json(line: str) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token} in {line!r}")

    return json.loads(line, parse_constant=refuse)


def test_jsonl_round_trip_non_finite_and_words(tmp_path: Path) -> None:
    path = tmp_path / "run" / "metrics.jsonl"
    sink = JsonlSink(path)
    sink.log(
        1,
        {
            "reward_mean": 0.25,
            "loss": math.nan,
            "grad_norm": math.inf,
            "kl": -math.inf,
            "trajectories": 16,
            "policy_version": np.int64(3),  # type: ignore[dict-item]
            "tokens_per_second": np.float32(1.5),  # type: ignore[dict-item]  # numpy scalars are accepted
            "missing": None,
        },
    )
    sink.log(1, {"pass@1": 0.5, "label": "after SFT", "format_errors": 2.0}, phase="eval")
    sink.close()
    sink.close()  # harmless twice

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    raw = [_strict_json(line) for line in lines]  # the file is strict JSON
    assert raw[0]["loss"] == "NaN" and raw[0]["grad_norm"] == "Infinity" and raw[0]["kl"] == "-Infinity"

    train, ev = read_metrics(path)
    assert (train["step"], train["phase"]) == (1, "train")
    assert isinstance(train["time"], float) and train["time"] > 1.6e9
    assert train["reward_mean"] == 0.25
    assert math.isnan(train["loss"])
    assert train["grad_norm"] == math.inf and train["kl"] == -math.inf
    assert train["trajectories"] == 16 and isinstance(train["trajectories"], int)
    assert train["policy_version"] == 3 and isinstance(train["policy_version"], int)
    assert train["tokens_per_second"] == 1.5 and isinstance(train["tokens_per_second"], float)
    assert train["missing"] is None
    assert ev["phase"] == "eval" and ev["label"] == "after SFT" and ev["pass@1"] == 0.5 and ev["format_errors"] == 2.0


def test_jsonl_appends_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    first = JsonlSink(path)
    for step in (1, 2, 3):
        first.log(step, {"reward_mean": step / 10})
    first.close()
    resumed = JsonlSink(path)  # the run restarts from its step-2 checkpoint
    resumed.log(3, {"reward_mean": 0.33})
    resumed.log(4, {"reward_mean": 0.4})
    resumed.close()
    rows = read_metrics(path)
    assert [(r["step"], r["reward_mean"]) for r in rows] == [(1, 0.1), (2, 0.2), (3, 0.3), (3, 0.33), (4, 0.4)]


def test_jsonl_flushes_each_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    sink = JsonlSink(path)
    sink.log(1, {"reward_mean": 1.0})
    assert read_metrics(path)[0]["reward_mean"] == 1.0  # readable while the sink is still open
    sink.close()


def test_jsonl_survives_a_line_cut_by_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    sink = JsonlSink(path)
    sink.log(1, {"reward_mean": 0.1})
    sink.close()
    with path.open("a") as f:
        f.write('{"step": 2, "phase": "tra')  # killed mid-write
    resumed = JsonlSink(path)
    resumed.log(2, {"reward_mean": 0.2})
    resumed.close()
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    with pytest.raises(ValueError, match=r"metrics.jsonl:2 is not a JSON object"):
        read_metrics(path, strict=True)


def test_jsonl_refuses_bad_metrics(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "metrics.jsonl")
    with pytest.raises(ValueError, match="'step' is reserved"):
        sink.log(1, {"step": 3.0})
    with pytest.raises(TypeError, match="metric 'x' is a dict"):
        sink.log(1, {"x": {"a": 1}})  # type: ignore[dict-item]
    sink.close()
    with pytest.raises(ValueError, match="is closed"):
        sink.log(1, {"reward_mean": 0.0})


def test_read_metrics_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_metrics(tmp_path / "nope.jsonl")


def test_make_sinks_default_is_jsonl_only(tmp_path: Path) -> None:
    with make_sinks(tmp_path / "run", tensorboard=False, wandb=False, config={}) as sinks:
        assert isinstance(sinks, MetricsSink)
        assert [type(s) for s in sinks.sinks] == [JsonlSink]
        assert sinks.paths == {"metrics": tmp_path / "run" / "metrics.jsonl"}
        sinks.log(1, {"reward_mean": 0.5})
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[0]["reward_mean"] == 0.5


def test_missing_tensorboard_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "tensorboard", "tensorboardX")
    with pytest.raises(MissingPackageError) as info:
        make_sinks(tmp_path / "run", tensorboard=True, wandb=False, config={})
    assert str(info.value) == "--tensorboard needs the tensorboard package: pip install tensorboard"
    assert not (tmp_path / "run").exists()  # refused before anything was written
    with pytest.raises(MissingPackageError, match="pip install tensorboard"):
        TensorBoardSink(tmp_path / "tb")


def test_missing_wandb_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "wandb")
    for asked in (True, "my-project"):
        with pytest.raises(MissingPackageError) as info:
            make_sinks(tmp_path / "run", tensorboard=False, wandb=asked, config={})
        assert str(info.value) == "--wandb needs the wandb package: pip install wandb"
    assert not (tmp_path / "run").exists()


class _FakeRun:
    def __init__(self, calls: list[tuple[str, Any]], run_id: str) -> None:
        self.calls = calls
        self.id = run_id

    def define_metric(self, name: str, **kwargs: Any) -> None:
        self.calls.append(("define_metric", (name, kwargs)))

    def log(self, data: Mapping[str, Any]) -> None:
        self.calls.append(("log", dict(data)))

    def finish(self) -> None:
        self.calls.append(("finish", None))


def _fake_wandb(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []
    module = types.ModuleType("wandb")

    def init(**kwargs: Any) -> _FakeRun:
        calls.append(("init", kwargs))
        return _FakeRun(calls, kwargs.get("id", "run123"))

    module.init = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", module)
    return calls


def test_wandb_sink_offline_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_wandb(monkeypatch)
    monkeypatch.setenv("WANDB_MODE", "offline")
    sinks = make_sinks(tmp_path / "run", tensorboard=False, wandb="arpo-test", config={"lr": 1e-6})
    assert [type(s) for s in sinks.sinks] == [JsonlSink, WandbSink]
    sinks.log(1, {"reward_mean": 0.5, "loss": math.nan})
    sinks.log(1, {"pass@1": 0.4, "label": "after ARPO"}, phase="eval")
    sinks.close()
    kind, init = calls[0]
    assert kind == "init"
    assert init["project"] == "arpo-test" and init["name"] == "run" and init["config"] == {"lr": 1e-6}
    assert init["mode"] == "offline" and init["dir"] == str(tmp_path / "run")
    assert "resume" not in init
    logs = [c[1] for c in calls if c[0] == "log"]
    assert logs[0]["train/reward_mean"] == 0.5 and logs[0]["train/step"] == 1 and math.isnan(logs[0]["train/loss"])
    assert logs[1] == {"eval/pass@1": 0.4, "eval/label": "after ARPO", "eval/step": 1}
    assert ("define_metric", ("eval/*", {"step_metric": "eval/step"})) in calls
    assert calls[-1] == ("finish", None)
    assert (tmp_path / "run" / "wandb-run-id").read_text().strip() == "run123"

    calls.clear()
    monkeypatch.delenv("WANDB_MODE")
    make_sinks(tmp_path / "run", tensorboard=False, wandb=True, config={}).close()  # a resumed run
    init = calls[0][1]
    assert init["project"] == "arpo" and init["id"] == "run123" and init["resume"] == "allow"
    assert "mode" not in init


class _Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.rows: list[tuple[int, dict[str, MetricValue], str]] = []
        self.fail = fail
        self.closed = False

    def log(self, step: int, metrics: Mapping[str, MetricValue], *, phase: str = "train") -> None:
        if self.fail:
            raise ConnectionError("dashboard unreachable")
        self.rows.append((step, dict(metrics), phase))

    def close(self) -> None:
        self.closed = True


def test_multisink_drops_a_failing_dashboard_but_not_the_record() -> None:
    record, broken, other = _Recorder(), _Recorder(fail=True), _Recorder()
    multi = MultiSink([record, broken, other])
    multi.log(1, {"reward_mean": 0.1})
    multi.log(2, {"reward_mean": 0.2})
    assert multi.sinks == [record, other] and broken.closed
    assert len(record.rows) == len(other.rows) == 2
    multi.close()
    assert record.closed and other.closed
    with pytest.raises(ConnectionError):
        MultiSink([_Recorder(fail=True)]).log(1, {"reward_mean": 0.0})


def test_tensorboard_sink_writes_event_file(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader  # type: ignore[import-untyped]
    from tensorboard.compat.proto import event_pb2  # type: ignore[import-untyped]

    sinks = make_sinks(tmp_path / "run", tensorboard=True, wandb=False, config={})
    assert [type(s) for s in sinks.sinks] == [JsonlSink, TensorBoardSink]
    sinks.log(1, {"reward_mean": 0.5, "trajectories": 16, "loss": math.nan})
    sinks.log(2, {"reward_mean": 0.75})
    sinks.log(2, {"pass@1": 0.25, "label": "after ARPO"}, phase="eval")
    sinks.close()
    files = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1
    scalars: dict[tuple[int, str], float] = {}
    for record in RawEventFileLoader(str(files[0])).Load():
        event = event_pb2.Event.FromString(record)
        for value in event.summary.value:
            scalars[(event.step, value.tag)] = value.simple_value
    assert scalars[(1, "train/reward_mean")] == 0.5
    assert scalars[(1, "train/trajectories")] == 16.0
    assert math.isnan(scalars[(1, "train/loss")])
    assert scalars[(2, "train/reward_mean")] == 0.75
    assert scalars[(2, "eval/pass@1")] == 0.25
    assert not any("label" in tag for _, tag in scalars)  # words stay in the JSONL record


def test_tensorboardx_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "tensorboard")
    written: list[tuple[str, float, int]] = []

    class SummaryWriter:
        def __init__(self, logdir: str) -> None:
            self.logdir = logdir

        def add_scalar(self, tag: str, value: float, global_step: int, walltime: float) -> None:
            written.append((tag, value, global_step))

        def flush(self) -> None:
            pass

        def close(self) -> None:
            written.append(("closed", 0.0, 0))

    module = types.ModuleType("tensorboardX")
    module.SummaryWriter = SummaryWriter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorboardX", module)
    sink = TensorBoardSink(tmp_path / "tb")
    sink.log(3, {"reward_mean": 0.5, "label": "x"})
    sink.close()
    assert written == [("train/reward_mean", 0.5, 3), ("closed", 0.0, 0)]
