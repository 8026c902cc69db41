"""A left-padded batch KV cache whose rows join and leave between decoding steps.

The batch keeps one transformers ``DynamicCache`` of shape (B, heads, T, head_dim) per layer plus an attention
mask (B, T) with 0 on padding. A new sequence is prefilled alone (no padding: exactly the computation a sequential
server does), then merged in by left-padding the shorter of the two caches with zeros — masked keys whose
values are zero contribute exactly nothing to attention. Finished rows are removed with an index select, and
columns that became padding in every row are trimmed from the left. Position ids are kept per row by the engine.

Only full-attention ``DynamicLayer`` caches are supported (Llama, Qwen2 without sliding window, SmolLM2, …).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache, DynamicLayer

__all__ = ["BatchCache", "check_supported"]


def check_supported(cache: DynamicCache) -> None:
    """Raise if the model's cache has layers this batching scheme cannot merge (sliding windows, linear attn)."""
    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            raise ValueError(
                f"The CPU server batches full-attention caches only; this model uses {type(layer).__name__} layers."
            )


def _layers(cache: DynamicCache) -> list[DynamicLayer]:
    return [layer for layer in cache.layers if isinstance(layer, DynamicLayer)]


class BatchCache:
    """The batch's KV cache and attention mask; rows are in the engine's order of active sequences."""

    def __init__(self) -> None:
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # (B, T), int64, 1 on real tokens

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[0])

    def clear(self) -> None:
        self.cache, self.mask = None, None

    def extend_mask(self) -> torch.Tensor:
        """The mask for a decoding step (one new real column per row); stored as the batch's mask."""
        assert self.mask is not None
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        return self.mask

    def append(self, cache: DynamicCache, rows: int) -> None:
        """Add ``rows`` copies of a freshly prefilled single-row ``cache`` (its mask is all ones)."""
        if rows > 1:
            cache.batch_repeat_interleave(rows)
        length = _layers(cache)[0].keys.shape[-2]
        mask = torch.ones(rows, length, dtype=torch.long)
        if self.cache is None or self.mask is None:
            self.cache, self.mask = cache, mask
            return
        current = self.mask.shape[1]
        if length < current:
            _pad_left(cache, current - length)
            mask = F.pad(mask, (current - length, 0))
        elif current < length:
            _pad_left(self.cache, length - current)
            self.mask = F.pad(self.mask, (length - current, 0))
        for mine, new in zip(_layers(self.cache), _layers(cache), strict=True):
            mine.keys = torch.cat([mine.keys, new.keys], dim=0)
            mine.values = torch.cat([mine.values, new.values], dim=0)
        self.mask = torch.cat([self.mask, mask], dim=0)

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (in this order), then drop the columns that are padding in every kept row."""
        if not rows:
            self.clear()
            return
        assert self.cache is not None
        assert self.mask is not None
        if len(rows) != self.rows:
            index = torch.tensor(rows, dtype=torch.long)
            self.cache.batch_select_indices(index)
            self.mask = self.mask[index]
        real_columns = self.mask.any(dim=0).nonzero()
        first = int(real_columns[0]) if real_columns.numel() else 0
        if first > 0:
            self.mask = self.mask[:, first:]
            for layer in _layers(self.cache):
                layer.keys = layer.keys[..., first:, :]
                layer.values = layer.values[..., first:, :]


def _pad_left(cache: DynamicCache, n: int) -> None:
    for layer in _layers(cache):
        layer.keys = F.pad(layer.keys, (0, 0, n, 0))
        layer.values = F.pad(layer.values, (0, 0, n, 0))
