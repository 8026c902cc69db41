"""MCP tools → OpenAI function schemas: names made valid and unique, parameter schemas normalised and bounded.

OpenAI (and vLLM's tool parsers) accept function names matching ``^[a-zA-Z0-9_-]{1,64}$`` and object schemas
for parameters; MCP allows more (dots, slashes, unicode, 128 characters, schemas of any size). Here:

* a name is sanitised (other characters → ``_``, cut to 64); a name offered by several servers, or colliding
  after sanitising, becomes ``server__name`` for every server offering it (plus a short hash if still taken);
  ``ToolCatalog.resolve`` maps the exposed name back to ``(server, original name)``;
* a parameter schema is forced to an object schema, ``$schema``/``$id`` are dropped, and when its JSON is larger
  than ``max_schema_bytes`` the ``description`` fields are dropped, then (if still too large) it is replaced by a
  permissive object schema — the tool stays callable and its description says so;
* descriptions are cut to ``max_description_chars``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from arpo_core.runtime.tools import ToolSpec

__all__ = ["ToolCatalog", "normalize_schema", "sanitize_name"]

_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
MAX_NAME = 64


def sanitize_name(name: str) -> str:
    """``name`` with every character outside ``[a-zA-Z0-9_-]`` replaced by ``_``, cut to 64 (never empty)."""
    cleaned = _INVALID.sub("_", name)[:MAX_NAME]
    return cleaned or "tool"


def _strip_descriptions(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_descriptions(v) for k, v in schema.items() if k not in ("description", "examples", "title")}
    if isinstance(schema, list):
        return [_strip_descriptions(v) for v in schema]
    return schema


def normalize_schema(schema: Mapping[str, Any] | None, max_schema_bytes: int = 8192) -> tuple[dict[str, Any], str]:
    """(an object JSON schema within ``max_schema_bytes``, a note for the description when it had to be cut)."""
    out: dict[str, Any] = dict(schema or {})
    out.pop("$schema", None)
    out.pop("$id", None)
    if out.get("type") != "object":
        out = {"type": "object", "properties": {"input": out}} if out.get("type") else {"type": "object", **out}
    out.setdefault("properties", {})
    if len(json.dumps(out)) <= max_schema_bytes:
        return out, ""
    slim = _strip_descriptions(out)
    if len(json.dumps(slim)) <= max_schema_bytes:
        return slim, " (parameter descriptions dropped: schema too large)"
    names = sorted(out.get("properties", {}))
    return (
        {"type": "object", "properties": {}, "additionalProperties": True},
        f" (parameter schema too large to show; parameters: {', '.join(names)[:200]})",
    )


@dataclass(frozen=True)
class ToolCatalog:
    """Every tool of every server under one valid, unique name each."""

    specs: tuple[ToolSpec, ...]
    origins: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Exposed name → (server, the tool's name on that server)."""

    @classmethod
    def build(
        cls,
        tools: Iterable[tuple[str, str, str | None, Mapping[str, Any] | None]],
        *,
        max_schema_bytes: int = 8192,
        max_description_chars: int = 1024,
    ) -> ToolCatalog:
        """From ``(server, name, description, input schema)`` in server order."""
        entries = list(tools)
        counts = Counter(sanitize_name(name) for _, name, _, _ in entries)
        taken: set[str] = set()
        specs: list[ToolSpec] = []
        origins: dict[str, tuple[str, str]] = {}
        for server, name, description, schema in entries:
            exposed = sanitize_name(name)
            if counts[exposed] > 1 or exposed in taken:
                exposed = sanitize_name(f"{server}__{name}")
            if exposed in taken:
                digest = hashlib.blake2b(f"{server}\x00{name}".encode(), digest_size=4).hexdigest()
                exposed = f"{exposed[: MAX_NAME - 9]}_{digest}"
            taken.add(exposed)
            params, note = normalize_schema(schema, max_schema_bytes)
            text = (description or name)[: max_description_chars - len(note)] + note
            specs.append(ToolSpec(exposed, text, params, server))
            origins[exposed] = (server, name)
        return cls(tuple(specs), origins)

    def resolve(self, exposed: str) -> tuple[str, str] | None:
        return self.origins.get(exposed)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]
