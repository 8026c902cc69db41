"""Prefix caching across requests: the KV of token sequences already run, reused by prompts that start with them.

An agent's requests repeat themselves: the continuation after a tool result is the previous request's prompt, its
output and the result; ARPO's branches restart from a prefix of an earlier trajectory; the global samples of a
group share the prompt. Without a cache every one of those re-prefills its whole context, and on a CPU the
prefill of a 450-token context (≈ 1 s for SmolLM2-135M on 2 cores) costs as much as seven batched decoding steps.

``PrefixCache`` keeps, under a token budget, the keys and values of the sequences the engine has run (each prompt
once prefilled, each sequence once finished: its prompt and every output token it fed back), one tensor per entry
of shape (layers, 2, kv_heads, tokens, head_dim). ``lookup`` returns the longest common prefix of a prompt with
any entry — at least ``min_tokens`` and never the whole prompt, so the engine still runs the last token and gets
its logits — and the engine prefills only the rest. Least recently used entries go first; an entry that is a
prefix of a new one is dropped, the new one covers it.

What it costs: a cached prefill computes the same attention over the same keys but in other matrix shapes, so its
logits differ from a full prefill in the last float bits (as with vLLM's automatic prefix caching); seeded samples
stay reproducible only as long as the cache sees the same requests in the same order. Off by default (the engine's
``prefix_cache_tokens=0``); ``arpo serve --prefix-cache-tokens`` turns it on. Entries belong to one weight
version: new weights empty the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["PrefixCache", "PrefixHit"]

MIN_TOKENS = 16
"""Shorter shared prefixes are not worth a lookup's copy (and the suffix forward of a tiny prompt is cheap)."""


@dataclass(frozen=True, slots=True)
class PrefixHit:
    tokens: int
    """How many leading tokens of the prompt the cache holds."""
    kv: torch.Tensor
    """Their keys and values: (layers, 2, kv_heads, tokens, head_dim), a view of the entry: not to be written."""


@dataclass(slots=True)
class _Entry:
    ids: torch.Tensor  # (n,) int64
    kv: torch.Tensor  # (layers, 2, kv_heads, n, head_dim)


class PrefixCache:
    """An LRU of (token ids → KV) entries under a budget of ``max_tokens`` tokens in all."""

    def __init__(self, max_tokens: int, *, min_tokens: int = MIN_TOKENS) -> None:
        if max_tokens < 1:
            raise ValueError(f"prefix cache max_tokens={max_tokens} must be at least 1 (or use no cache).")
        self.max_tokens = max_tokens
        self.min_tokens = max(int(min_tokens), 1)
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next_key = 0
        self.tokens = 0  # held in all
        self.hits = 0  # lookups that found a prefix
        self.lookups = 0
        self.reused_tokens = 0  # prompt tokens served from the cache instead of prefilled

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every entry (the weights changed)."""
        self._entries.clear()
        self.tokens = 0

    def lookup(self, prompt: Sequence[int]) -> PrefixHit | None:
        """The longest cached prefix of ``prompt`` shorter than the prompt itself, if at least ``min_tokens`` long."""
        self.lookups += 1
        if len(prompt) <= self.min_tokens or not self._entries:
            return None
        query = torch.tensor(prompt, dtype=torch.long)
        best_key, best = -1, 0
        for key, entry in self._entries.items():
            shared = _common_prefix(entry.ids, query)
            if shared > best:
                best_key, best = key, shared
        best = min(best, len(prompt) - 1)  # the last prompt token is always run: its logits sample the first token
        if best < self.min_tokens:
            return None
        self._entries.move_to_end(best_key)
        self.hits += 1
        self.reused_tokens += best
        return PrefixHit(best, self._entries[best_key].kv[:, :, :, :best])

    def store(self, ids: Sequence[int], kv: torch.Tensor) -> None:
        """Keep the KV ``kv`` (layers, 2, kv_heads, len(ids), head_dim) of the tokens ``ids``.

        ``kv`` is kept as given (the caller passes a tensor nobody writes to again). A sequence already covered by an
        entry is not stored twice; entries it covers are dropped.
        """
        n = len(ids)
        if kv.shape[3] != n:
            raise ValueError(f"the KV holds {kv.shape[3]} tokens, the ids {n}.")
        if n < self.min_tokens or n > self.max_tokens:
            return
        new = torch.tensor(ids, dtype=torch.long)
        for key in list(self._entries):
            entry = self._entries[key]
            shared = _common_prefix(entry.ids, new)
            if shared == n:  # the new sequence is a prefix of (or equal to) an entry
                self._entries.move_to_end(key)
                return
            if shared == len(entry.ids):  # an entry is a prefix of the new sequence
                self._drop(key)
        self._entries[self._next_key] = _Entry(new, kv)
        self._next_key += 1
        self.tokens += n
        while self.tokens > self.max_tokens:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key)
        self.tokens -= len(entry.ids)


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """Length of the longest common prefix of two 1-D id tensors."""
    m = min(len(a), len(b))
    if m == 0 or a[0] != b[0]:
        return 0
    differ = (a[:m] != b[:m]).nonzero()
    return m if differ.numel() == 0 else int(differ[0])
