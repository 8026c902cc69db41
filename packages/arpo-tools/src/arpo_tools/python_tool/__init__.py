"""The sandboxed Python tool of ARPO as an MCP server.

Processes: the MCP server → the relay (per-call bookkeeping) → the zygote (preloaded, forks one sandbox per
call; a second, full zygote, its child, for the calls that name sympy) → the sandbox (runs one call's code, then
exits).

Modules (each says which protections it applies): ``config`` (``PythonToolConfig``), ``server``
(``build_server``, ``probe_layers``), ``stdio`` (MCP over stdio without worker threads), ``supervisor`` (the
server's side: starts and restarts the relay), ``relay``, ``zygote``, ``sandbox`` (the isolation layers),
``cgroups``, ``limits`` (rlimits), ``runner`` (runs the code in the sandbox), ``result`` (the text the model
reads), ``layers`` (the report), ``syscalls`` (ctypes).

Names are imported lazily: the relay and zygote import this package and must not pull in pydantic or mcp (every
call is a fork of the zygote: what it imports, each call copies).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arpo_tools.python_tool.config import PythonToolConfig
    from arpo_tools.python_tool.layers import Layer
    from arpo_tools.python_tool.server import build_server, probe_layers
    from arpo_tools.python_tool.supervisor import PythonSandbox

__all__ = ["Layer", "PythonSandbox", "PythonToolConfig", "build_server", "probe_layers"]

_WHERE = {
    "PythonToolConfig": "arpo_tools.python_tool.config",
    "Layer": "arpo_tools.python_tool.layers",
    "build_server": "arpo_tools.python_tool.server",
    "probe_layers": "arpo_tools.python_tool.server",
    "PythonSandbox": "arpo_tools.python_tool.supervisor",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
