"""Inference for ``arpo train``: check given servers before any long work, or start arpo's CPU server.

``start_cpu_server`` runs ``arpo serve`` as a child process on a free 127.0.0.1 port (its log in the run folder),
waits until ``/health`` answers, and stops it (SIGTERM, then SIGKILL) when the ``with`` block ends — also when
training fails or is interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from arpo_backends.train.dist import free_port

__all__ = ["ServerError", "StartedServer", "check_reachable", "server_root", "start_cpu_server"]


class ServerError(RuntimeError):
    """An inference server cannot be used; the message says which and what to do."""


def server_root(url: str) -> str:
    """``http://h:8000/v1`` → ``http://h:8000`` (routes such as ``/health`` live at the root)."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _get(url: str, timeout: float) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = resp.read()
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def check_reachable(url: str, timeout: float = 10.0) -> None:
    """Raise ``ServerError`` unless ``url`` answers ``GET /v1/models``."""
    if not url.startswith(("http://", "https://")):
        raise ServerError(f"--rollout-url {url!r} is not an http(s) URL; pass e.g. http://127.0.0.1:8000/v1.")
    try:
        _get(server_root(url) + "/v1/models", timeout)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise ServerError(
            f"the rollout server {url} does not answer ({reason}); start it first (vllm serve … or arpo serve …) "
            "or leave --rollout-url out to let arpo start its CPU server."
        ) from None


def _die_with_parent() -> None:
    """In the child: SIGTERM when the parent dies, even by ``os._exit`` or SIGKILL (Linux ``PR_SET_PDEATHSIG``)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass


def is_arpo_server(url: str, timeout: float = 10.0) -> bool:
    """Whether ``url`` is arpo's CPU server (its ``/health`` reports a ``weight_version``; vLLM's is empty)."""
    try:
        return "weight_version" in _get(server_root(url) + "/health", timeout)
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


@dataclass(frozen=True)
class StartedServer:
    url: str
    """Base URL with ``/v1``."""
    model_name: str
    log: Path
    pid: int


@contextmanager
def start_cpu_server(
    model: str | Path,
    log: Path,
    *,
    model_name: str = "policy",
    threads: int | None = None,
    max_model_len: int | None = None,
    prefix_cache_tokens: int = 0,
    timeout_s: float = 300.0,
) -> Iterator[StartedServer]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "arpo_core.cli", "serve", "--model", str(model), "--port", str(port),
        "--served-model-name", model_name, "--log-level", "warning",
    ]  # fmt: skip
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if max_model_len is not None:
        cmd += ["--max-model-len", str(max_model_len)]
    if prefix_cache_tokens:
        cmd += ["--prefix-cache-tokens", str(prefix_cache_tokens)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent
        )
    server = StartedServer(f"http://127.0.0.1:{port}/v1", model_name, log, proc.pid)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                raise ServerError(f"arpo's CPU server exited with code {proc.returncode}: {' | '.join(tail)}")
            try:
                _get(f"http://127.0.0.1:{port}/health", 2.0)
                break
            except (urllib.error.URLError, OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"arpo's CPU server did not answer within {timeout_s:.0f} s; see {log}."
                    ) from None
                time.sleep(0.3)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
