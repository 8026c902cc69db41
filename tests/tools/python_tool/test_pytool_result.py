"""The text the model reads from a python call, the config's validation, and the synchronous layer probe."""

from __future__ import annotations

import inspect
import json
import os
import signal

import pytest
from pydantic import ValidationError

from arpo_tools.python_tool.config import PythonToolConfig
from arpo_tools.python_tool.layers import LAYER_NAMES, Layer, format_layers
from arpo_tools.python_tool.limits import SandboxLimits
from arpo_tools.python_tool.result import RunOutcome, format_result
from arpo_tools.python_tool.server import probe_layers

FORMAT = {"max_output_bytes": 100, "stderr_tail_lines": 3, "cpu_limit": 5.0, "memory_mb": 256, "scratch_mb": 8}


def test_clean_run_is_stdout_alone() -> None:
    outcome = RunOutcome(stdout="42\n", stdout_bytes=3, exit_code=0)
    assert format_result(outcome, **FORMAT) == "42"
    assert not outcome.failed


def test_nothing_printed_says_so() -> None:
    assert format_result(RunOutcome(exit_code=0), **FORMAT) == "(no output)"


def test_error_shows_the_traceback_tail_and_exit_status() -> None:
    stderr = "Traceback (most recent call last):\n  a\n  b\n  c\nZeroDivisionError: division by zero\n"
    outcome = RunOutcome(stdout="partial\n", stderr=stderr, exit_code=1)
    text = format_result(outcome, **FORMAT)
    assert text.splitlines() == [
        "partial",
        "[stderr, last lines]",
        "  b",
        "  c",
        "ZeroDivisionError: division by zero",
        "[exit status 1]",
    ]
    assert outcome.failed


def test_truncation_timeout_and_signals_are_named() -> None:
    truncated = RunOutcome(stdout="x" * 100, stdout_bytes=10**6, stdout_truncated=True, exit_code=0)
    assert "[output truncated after 100 bytes; 1000000 bytes were printed]" in format_result(truncated, **FORMAT)
    timed_out = RunOutcome(timed_out=True, timeout_s=2.5)
    assert format_result(timed_out, **FORMAT) == "[timed out after 2.5 s; the process was killed]"
    cpu = RunOutcome(signal=int(signal.SIGKILL), cpu_s=5.2)
    assert format_result(cpu, **FORMAT) == "[killed by signal SIGKILL: CPU time limit of 5 s exceeded]"
    oom = RunOutcome(signal=int(signal.SIGKILL), oom_killed=True)
    assert format_result(oom, **FORMAT) == "[killed by signal SIGKILL: memory limit of 256 MB exceeded]"
    assert "SIGSEGV" in format_result(RunOutcome(signal=int(signal.SIGSEGV)), **FORMAT)
    assert all(o.failed for o in (timed_out, cpu, oom))


def test_sandbox_errors_and_notes() -> None:
    outcome = RunOutcome.error("the sandbox could not start: boom", notes=("the sandbox was restarted",))
    assert format_result(outcome, **FORMAT) == (
        "[sandbox error: the sandbox could not start: boom]\n[note: the sandbox was restarted]"
    )
    assert outcome.failed


def test_outcome_from_the_zygotes_json_ignores_unknown_keys() -> None:
    raw = {"stdout": "1\n", "stdout_bytes": 2, "exit_code": 0, "signal": None, "future_field": 1}
    assert RunOutcome.from_json(raw) == RunOutcome(stdout="1\n", stdout_bytes=2, exit_code=0)


def test_config_is_frozen_strict_and_maps_to_the_zygotes_limits() -> None:
    config = PythonToolConfig(timeout_s=5, memory_mb=256)
    with pytest.raises(ValidationError):
        PythonToolConfig(timeout=5)  # type: ignore[call-arg]  # unknown key
    with pytest.raises(ValidationError):
        PythonToolConfig(timeout_s=0)
    with pytest.raises(ValidationError):
        PythonToolConfig(masked_paths=("/tmp",))
    with pytest.raises(ValidationError):
        config.timeout_s = 3  # type: ignore[misc]
    limits = config.to_limits()
    assert SandboxLimits.from_json(limits.to_json()) == limits
    assert json.loads(limits.to_json())["memory_mb"] == 256
    # Two zygotes by default (light: math, numpy; full: + sympy), the full one keeping half the pool.
    assert (limits.light_modules, limits.full_only, limits.full_prefork) == (("math", "numpy"), ("sympy",), 2)
    assert limits.slots == config.max_concurrent + config.prefork + limits.full_prefork
    single = PythonToolConfig(light_preload=()).to_limits()
    assert (single.light_modules, single.full_only, single.full_prefork) == (("math", "numpy", "sympy"), (), 0)
    assert single.slots == config.max_concurrent + config.prefork


def test_every_config_field_is_documented_with_its_default() -> None:
    source = inspect.getsource(PythonToolConfig)
    for name in PythonToolConfig.model_fields:
        after = source.split(f"\n    {name}:", 1)[1].split("\n", 1)[1]
        assert after.lstrip().startswith('"""'), f"{name} has no docstring"
        assert "Default" in after.split('"""')[1], f"{name}'s docstring does not give its default"


def test_layer_report_lines() -> None:
    text = format_layers([Layer("pid-namespace", True), Layer("cgroup-pids", False, "no pids controller")])
    assert text.splitlines()[0].startswith("[on ] pid-namespace: own PID namespace")
    assert text.splitlines()[1] == "[off] cgroup-pids: no pids controller"


def test_probe_layers_reports_every_layer() -> None:
    layers = probe_layers(PythonToolConfig(preload=("math",), prefork=0))
    assert {layer.name for layer in layers} >= set(LAYER_NAMES) - {"user-namespace"}
    if os.geteuid() == 0:  # as root on Linux (here and in CI) every layer is on
        assert [layer.name for layer in layers if not layer.active] == []
