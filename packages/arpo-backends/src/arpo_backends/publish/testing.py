"""Test doubles for publishing: a recording HTTP server and a recording ``WeightBroadcaster``.

``RecordingServer`` is a real HTTP server (``http.server`` in a daemon thread, 127.0.0.1, a port the OS picks)
that records every request: method, path, query and JSON body, in arrival order. It answers 200 by default the
way vLLM does (``/get_world_size`` → ``{"world_size": 1}``, ``/v1/load_lora_adapter`` → plain text, arpo's
``/v1/load_weights`` → the version it was given, anything else → ``{"message": "ok"}``); ``respond(path, status,
body)`` overrides one route, ``hang(path)`` makes a route never answer until the server stops.

``RecordingBroadcaster`` records ``init`` arguments and every broadcast's tensors (cloned); ``hang=True`` makes
``broadcast`` block until ``close`` (a silent NCCL hang), ``fail`` makes it raise. Both serve trainers' tests too:
a trainer can publish to a ``RecordingServer`` and check what it sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    import torch

__all__ = ["Call", "RecordingBroadcaster", "RecordingServer"]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    """The decoded JSON body, or ``None`` when the request had none."""

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"


Responder = Callable[[Call], tuple[int, Any]]


def _default(call: Call) -> tuple[int, Any]:
    if call.path == "/get_world_size":
        return 200, {"world_size": 1}
    if call.path == "/v1/load_lora_adapter":
        name = call.body.get("lora_name") if isinstance(call.body, dict) else None
        return 200, f"Success: LoRA adapter '{name}' added successfully."
    if call.path == "/v1/unload_lora_adapter":
        name = call.body.get("lora_name") if isinstance(call.body, dict) else None
        return 200, f"Success: LoRA adapter '{name}' removed successfully."
    if call.path == "/v1/load_weights":
        version = call.body.get("weight_version") if isinstance(call.body, dict) else None
        return 200, {"status": "ok", "weight_version": version}
    if call.path == "/reset_prefix_cache":
        return 200, {"success": True}
    return 200, {"message": "ok"}


class RecordingServer:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._responders: dict[str, Responder] = {}
        self._hung: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="recording-server", daemon=True
        )
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def respond(self, path: str, status: int, body: Any) -> None:
        """Answer ``path`` with ``status`` and ``body`` (a ``str`` is sent as text, anything else as JSON)."""
        self._responders[path] = lambda _call: (status, body)

    def respond_with(self, path: str, responder: Responder) -> None:
        self._responders[path] = responder

    def hang(self, path: str) -> None:
        """Never answer ``path`` (until the server stops)."""
        self._hung.add(path)

    def routes(self) -> list[str]:
        with self._lock:
            return [call.route for call in self.calls]

    def bodies(self, path: str) -> list[Any]:
        with self._lock:
            return [call.body for call in self.calls if call.path == path]

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                call = Call(method, parts.path, dict(parse_qsl(parts.query)), body)
                with recorder._lock:
                    recorder.calls.append(call)
                if parts.path in recorder._hung:
                    recorder._stop.wait()
                    return
                status, answer = recorder._responders.get(parts.path, _default)(call)
                text = answer if isinstance(answer, str) else json.dumps(answer)
                data = text.encode()
                self.send_response(status)
                self.send_header("content-type", "text/plain" if isinstance(answer, str) else "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@dataclass
class RecordingBroadcaster:
    hang: bool = False
    fail: BaseException | None = None
    inits: list[tuple[str, int, int]] = field(default_factory=list)
    broadcasts: list[list[torch.Tensor]] = field(default_factory=list)
    closed: bool = False
    _released: threading.Event = field(default_factory=threading.Event, repr=False)

    def init(self, master_address: str, master_port: int, world_size: int) -> None:
        self.inits.append((master_address, master_port, world_size))

    def broadcast(self, tensors: Sequence[torch.Tensor]) -> None:
        if self.fail is not None:
            raise self.fail
        if self.hang:
            self._released.wait()
            return
        self.broadcasts.append([t.detach().clone() for t in tensors])

    def close(self) -> None:
        self.closed = True
        self._released.set()
