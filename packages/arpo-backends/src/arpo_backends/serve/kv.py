"""A left-padded batch KV cache in preallocated buffers; rows join and leave between decoding steps.

All layers' keys and values live in one buffer of shape (layers, 2, rows, kv_heads, columns, head_dim) plus a
boolean mask (rows, columns), True on real tokens. The batch's live region is the column range ``[start, end)``
of its first ``rows`` rows, left-padded: every row's newest token sits in column ``end - 1``, so a decoding step
writes column ``end`` of every row in place (no ``torch.cat`` of the whole cache per step and layer) and attends
to a view of ``[start, end]``. Masked keys get exactly zero attention weight, and the padding holds finite values
(zeros, or a finished row's old keys), so padding changes nothing.

* ``add_rows``: a prefilled prompt (from the engine's packed prefill) is copied into new rows, right-aligned at
  ``end``; ``start`` moves left when the prompt is longer than the batch (reallocating when there is no room).
* ``remove``: finished rows are dropped by moving the last rows into their slots (one copy per moved row, not a
  gather of the whole batch), then columns that became padding in every row are trimmed by advancing ``start``.
* Buffers grow geometrically (rows and columns) and are reallocated only when full; the copy then is of the live
  region only.

Only full-attention ``DynamicLayer`` caches are supported (Llama, Qwen2 without sliding window, SmolLM2, …).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

__all__ = ["BatchCache", "check_supported"]

_LEFT_SLACK = 32  # free columns kept left of ``start`` at a reallocation: room for a longer prompt to join
_RIGHT_SLACK = 128  # at least this many free columns right of ``end`` at a reallocation: room to decode
_KEEP_BYTES = 512 * 1024 * 1024  # an emptied batch keeps buffers up to this size for the next one


def check_supported(cache: DynamicCache) -> None:
    """Raise if the model's cache has layers this batching scheme cannot merge (sliding windows, linear attn)."""
    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            raise ValueError(
                f"The CPU server batches full-attention caches only; this model uses {type(layer).__name__} layers."
            )


class _BufferLayer(DynamicLayer):
    """One layer's view of the batch buffers for a decoding forward: writes column ``end``, returns ``[start, end]``."""

    def __init__(self, owner: BatchCache, index: int) -> None:
        super().__init__()
        self.owner = owner
        self.index = index
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.owner.write_step(self.index, key_states, value_states)

    def get_seq_length(self) -> int:
        return self.owner.width

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.width + query_length, 0


class BatchCache:
    """The batch's KV cache and attention mask; rows are in the engine's order of active sequences."""

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None  # (layers, 2, R, kv_heads, C, head_dim)
        self.mask: torch.Tensor | None = None  # (R, C) bool, True on real tokens
        self.rows = 0
        self.start = 0
        self.end = 0
        self.cache: Cache | None = None  # the Cache object handed to the model for decoding forwards

    @property
    def width(self) -> int:
        """Columns of the live region (before the token being decoded)."""
        return self.end - self.start

    def clear(self) -> None:
        self.buffer = self.mask = self.cache = None
        self.rows = self.start = self.end = 0

    # ------------------------------------------------------------------ decoding
    def decode_mask(self) -> torch.Tensor:
        """Open column ``end`` for this step's token of every row; the (rows, width + 1) boolean mask."""
        assert self.buffer is not None
        assert self.mask is not None
        if self.end >= self.mask.shape[1]:
            self._reallocate(self.rows, 0)
            assert self.mask is not None
        self.mask[: self.rows, self.end] = True
        return self.mask[: self.rows, self.start : self.end + 1]

    def write_step(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.buffer is not None
        buf = self.buffer[layer]
        buf[0, : self.rows, :, self.end] = keys[:, :, -1]
        buf[1, : self.rows, :, self.end] = values[:, :, -1]
        live = buf[:, : self.rows, :, self.start : self.end + 1]
        return live[0], live[1]

    def advance(self) -> None:
        """The decoding forward wrote column ``end``: it is now part of the live region."""
        self.end += 1

    # ------------------------------------------------------------------ joining and leaving
    def reserve(self, rows: int, length: int, like: DynamicCache) -> None:
        """Make room for ``rows`` more rows holding up to ``length`` tokens (shapes and dtype from ``like``)."""
        if self.buffer is None or self.mask is None:
            first = like.layers[0].keys
            layers = len(like.layers)
            _, heads, _, dim = first.shape
            columns = _LEFT_SLACK + length + _RIGHT_SLACK
            self.buffer = torch.zeros(layers, 2, rows, heads, columns, dim, dtype=first.dtype)
            self.mask = torch.zeros(rows, columns, dtype=torch.bool)
            self.cache = Cache(layers=[_BufferLayer(self, i) for i in range(layers)])
            self.start = self.end = _LEFT_SLACK + length
            return
        if self.rows == 0:  # an empty batch can be placed anywhere
            self.start = self.end = length
        left = max(length - self.width, 0)  # columns to open left of ``start``
        if self.rows + rows > self.mask.shape[0] or self.start < left or self.end >= self.mask.shape[1]:
            self._reallocate(self.rows + rows, left)

    def add_rows(self, prefill: DynamicCache, offset: int, length: int, copies: int) -> None:
        """Copy a prefilled prompt (row 0 of ``prefill``, columns ``offset`` to ``offset + length``) into ``copies``
        new rows."""
        assert self.buffer is not None
        assert self.mask is not None
        first, last = self.rows, self.rows + copies
        begin = self.end - length
        assert begin >= 0, "reserve() first"
        assert last <= self.mask.shape[0], "reserve() first"
        for i, layer in enumerate(prefill.layers):
            target = self.buffer[i, :, first:last, :, begin : self.end]
            target[0].copy_(layer.keys[:1, :, offset : offset + length].expand(copies, -1, -1, -1))
            target[1].copy_(layer.values[:1, :, offset : offset + length].expand(copies, -1, -1, -1))
        self.mask[first:last] = False  # the whole row: a slot's earlier occupant may have left True columns
        self.mask[first:last, begin : self.end] = True
        self.start = min(self.start, begin)
        self.rows = last

    def remove(self, dead: list[int]) -> list[int]:
        """Drop rows ``dead``; returns the new order as old row indices (the last rows fill the holes)."""
        order = list(range(self.rows))
        if not dead:
            return order
        gone = set(dead)
        keep = self.rows - len(gone)
        if keep == 0:
            self._empty()
            return []
        assert self.buffer is not None
        assert self.mask is not None
        holes = [r for r in range(keep) if r in gone]
        movers = [r for r in range(keep, self.rows) if r not in gone]
        for hole, mover in zip(holes, movers, strict=True):
            self.buffer[:, :, hole, :, self.start : self.end] = self.buffer[:, :, mover, :, self.start : self.end]
            self.mask[hole] = self.mask[mover]
            order[hole] = mover
        self.rows = keep
        real = self.mask[:keep, self.start : self.end].any(dim=0).nonzero()
        if real.numel():
            self.start += int(real[0])
        return order[:keep]

    def row_kv(self, row: int, length: int) -> torch.Tensor:
        """A copy of row ``row``'s last ``length`` columns: (layers, 2, kv_heads, length, head_dim)."""
        assert self.buffer is not None
        assert self.mask is not None
        assert 0 < length <= self.width
        assert bool(self.mask[row, self.end - length : self.end].all())
        return self.buffer[:, :, row, :, self.end - length : self.end].clone()

    # ------------------------------------------------------------------ internals
    def _empty(self) -> None:
        if self.buffer is not None and self.buffer.numel() * self.buffer.element_size() > _KEEP_BYTES:
            self.clear()
            return
        self.rows = 0
        if self.mask is not None:
            self.mask.zero_()

    def _reallocate(self, rows: int, left: int) -> None:
        """New buffers with room for ``rows`` rows, ``left`` more columns left of ``start`` and then some."""
        assert self.buffer is not None
        assert self.mask is not None
        old_rows = self.mask.shape[0]
        width = self.width
        new_rows = old_rows if rows <= old_rows else max(rows, old_rows + old_rows // 2)
        start = _LEFT_SLACK + left
        columns = start + width + max(_RIGHT_SLACK, width)
        layers, _, _, heads, _, dim = self.buffer.shape
        buffer = torch.zeros(layers, 2, new_rows, heads, columns, dim, dtype=self.buffer.dtype)
        mask = torch.zeros(new_rows, columns, dtype=torch.bool)
        live = slice(self.start, self.end)
        buffer[:, :, : self.rows, :, start : start + width] = self.buffer[:, :, : self.rows, :, live]
        mask[: self.rows, start : start + width] = self.mask[: self.rows, live]
        self.buffer, self.mask = buffer, mask
        self.start, self.end = start, start + width
