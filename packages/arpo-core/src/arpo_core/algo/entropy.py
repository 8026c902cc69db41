r"""Token entropy estimators and the entropy window of a segment (ARPO §3.1, spec §2).

For one position with next-token distribution ``p`` over a vocabulary ``V`` (after temperature)::

    H(p) = -Σ_j p_j ln p_j                      (nats, 0 ≤ H ≤ ln|V|)
    h    = H / ln|V|                            (normalised, 0 ≤ h ≤ 1)

Three estimators, ordered ``truncated ≤ exact ≤ tail`` for every distribution:

* ``exact`` — from full logits (trainer side): ``p = softmax(z / T)``.
* ``topk`` — the reference code's estimator: only the endpoint's top-k logprobs ``ℓ_1..ℓ_k`` are known, and
  ``H_k = -Σ_{i≤k} e^{ℓ_i} ℓ_i``. Every dropped term is ≥ 0, so it is a lower bound of ``H``.
* ``topk_tail`` — ``H_k`` plus a tail term for the missing mass ``r = 1 - Σ_{i≤k} e^{ℓ_i}``, spread uniformly
  over the other ``|V| - k`` tokens: ``-r ln(r / (|V| - k))``. For a fixed mass ``r`` on ``|V| - k`` tokens the
  uniform spread has the largest entropy, so this is an upper bound of ``H``.

Caveat of the truncated estimator: it is not monotone in the true entropy. Spreading mass beyond the top k
*lowers* it — uniform over 1,000 tokens scores ``2·(1/1000)·ln 1000 = 0.014`` nats with k = 2, less than a fair
coin's ``ln 2 = 0.69`` — so for very flat distributions ΔH can even change sign. The reference (and the
published α, β) use it; ``topk_tail`` does not have this failure, and larger k narrows the gap.

The bounds hold for any subset of the vocabulary, so they also hold when an endpoint returns the sampled token
in addition to the top k (vLLM does), and when entries carry vLLM's ``-9999.0`` stand-in for ``-inf``.

The window of a segment (spec §2): the first ``k`` generated tokens (reference ``k = 20``), reduced by ``sum``
(the reference, default: the published α, β were tuned on sums) or ``mean``.

Deviation from the paper: the paper normalises by ``|V|``; the reference code (and arpo) by ``ln|V|``, which is
what makes ``h ∈ [0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "EntropyEstimator",
    "EstimatorKind",
    "ExactFromLogits",
    "TopKTruncated",
    "TopKWithTail",
    "WindowReduction",
    "entropy_from_logits",
    "entropy_from_topk",
    "entropy_from_topk_with_tail",
    "make_estimator",
    "pad_topk",
    "window_entropy",
]

WindowReduction = Literal["sum", "mean"]


class EstimatorKind(str, Enum):
    """Which rollout-side estimator turns top-k logprobs into a token entropy."""

    TOPK = "topk"
    """Truncated top-k sum, as the reference code (a lower bound)."""
    TOPK_TAIL = "topk_tail"
    """Top-k plus a uniform tail for the missing mass (an upper bound)."""


def _log_vocab(vocab_size: int) -> float:
    if vocab_size < 2:
        raise ValueError(f"vocab_size={vocab_size} is too small; entropy is normalised by ln|V|, so use |V| ≥ 2.")
    return math.log(vocab_size)


def entropy_from_logits(logits: ArrayLike, temperature: float = 1.0) -> NDArray[np.float64]:
    """Exact entropy in nats of ``softmax(logits / temperature)`` along the last axis: ``(..., V) -> (...)``."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 (greedy decoding has zero entropy by definition).")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - np.max(z, axis=-1, keepdims=True)
    log_p = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    p = np.exp(log_p)
    return _plogp_sum(p, log_p)


def _plogp_sum(p: NDArray[np.float64], log_p: NDArray[np.float64]) -> NDArray[np.float64]:
    """``-Σ p ln p`` along the last axis with ``0 · ln 0 = 0`` (no NaN from ``0 · -inf``)."""
    safe = np.where(p > 0.0, log_p, 0.0)
    return np.asarray(-np.sum(p * safe, axis=-1), dtype=np.float64)


def pad_topk(topk_logprobs: Sequence[Sequence[float]] | ArrayLike) -> NDArray[np.float64]:
    """Ragged per-position top-k logprobs ``[[ℓ..], ...]`` as a ``(T, k_max)`` array padded with ``-inf``."""
    if isinstance(topk_logprobs, np.ndarray):
        arr = np.asarray(topk_logprobs, dtype=np.float64)
        if arr.size == 0:
            return np.zeros((len(arr), 0), dtype=np.float64)
        return arr.reshape(len(arr), -1)
    try:  # the common case: every position has the same k (one C-level conversion)
        dense = np.array(topk_logprobs, dtype=np.float64)
    except ValueError:
        dense = None
    if dense is not None and dense.ndim == 2:
        return dense
    rows = [np.asarray(row, dtype=np.float64).ravel() for row in topk_logprobs]  # type: ignore[union-attr]
    width = max((row.size for row in rows), default=0)
    out = np.full((len(rows), width), -np.inf, dtype=np.float64)
    for i, row in enumerate(rows):
        out[i, : row.size] = row
    return out


def _topk_probs(topk_logprobs: Sequence[Sequence[float]] | ArrayLike) -> tuple[NDArray[np.float64], ...]:
    logp = pad_topk(topk_logprobs)  # (T, k)
    if not bool(np.all(logp <= 1e-6)):  # one pass catches both NaN and positive values
        if np.any(np.isnan(logp)):
            raise ValueError("a top-k logprob is NaN; the server returned a broken distribution for this segment.")
        bad = float(logp[logp > 1e-6][0])
        raise ValueError(f"a top-k logprob of {bad} is positive; pass log-probabilities (≤ 0), not probabilities.")
    logp = np.minimum(logp, 0.0)
    p = np.exp(logp)
    return logp, p


def entropy_from_topk(topk_logprobs: Sequence[Sequence[float]] | ArrayLike) -> NDArray[np.float64]:
    """Truncated entropy in nats per position, ``-Σ_{i≤k} p_i ln p_i``: ``(T, k) -> (T,)`` (a lower bound)."""
    logp, p = _topk_probs(topk_logprobs)
    return _plogp_sum(p, logp)


def entropy_from_topk_with_tail(
    topk_logprobs: Sequence[Sequence[float]] | ArrayLike, vocab_size: int
) -> NDArray[np.float64]:
    """Top-k entropy plus the uniform-tail term ``-r ln(r / (|V| - k))`` in nats: ``(T, k) -> (T,)``, an upper bound."""
    logp, p = _topk_probs(topk_logprobs)
    head = _plogp_sum(p, logp)
    known = np.sum(np.isfinite(logp) & (p > 0.0), axis=-1)  # tokens whose mass is accounted for
    rest = vocab_size - known
    if np.any(rest < 0):
        raise ValueError(f"{int(known.max())} top-k entries exceed vocab_size={vocab_size}; pass the model's |V|.")
    missing = np.clip(1.0 - np.sum(p, axis=-1), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = np.where((missing > 0.0) & (rest > 0), -missing * np.log(missing / np.maximum(rest, 1)), 0.0)
    return np.asarray(head + tail, dtype=np.float64)


class EntropyEstimator(Protocol):
    """Turns the per-position top-k logprobs of a segment into normalised token entropies in ``[0, 1]``."""

    @property
    def vocab_size(self) -> int: ...

    def __call__(self, topk_logprobs: Sequence[Sequence[float]]) -> NDArray[np.float64]: ...


@dataclass(frozen=True, slots=True)
class TopKTruncated:
    """Reference-compatible estimator: truncated top-k sum divided by ``ln|V|``."""

    vocab_size: int

    def __call__(self, topk_logprobs: Sequence[Sequence[float]]) -> NDArray[np.float64]:
        return entropy_from_topk(topk_logprobs) / _log_vocab(self.vocab_size)


@dataclass(frozen=True, slots=True)
class TopKWithTail:
    """Top-k plus the uniform-tail upper bound, divided by ``ln|V|`` (clipped to 1)."""

    vocab_size: int

    def __call__(self, topk_logprobs: Sequence[Sequence[float]]) -> NDArray[np.float64]:
        h = entropy_from_topk_with_tail(topk_logprobs, self.vocab_size) / _log_vocab(self.vocab_size)
        return np.minimum(h, 1.0)


@dataclass(frozen=True, slots=True)
class ExactFromLogits:
    """Trainer-side estimator from full logits ``(T, V')``, divided by ``ln|V|``.

    ``vocab_size`` is the tokenizer's |V|; models often pad the logits to a larger ``V'`` (e.g. a multiple of
    64), so by default the width of the logits is used only when no |V| is given.
    """

    temperature: float = 1.0
    vocab_size: int | None = None

    def __call__(self, logits: ArrayLike) -> NDArray[np.float64]:
        z = np.asarray(logits, dtype=np.float64)
        v = self.vocab_size if self.vocab_size is not None else z.shape[-1]
        return entropy_from_logits(z, self.temperature) / _log_vocab(v)


def make_estimator(kind: EstimatorKind | str, vocab_size: int) -> TopKTruncated | TopKWithTail:
    """The rollout-side estimator named by ``kind`` (``"topk"`` or ``"topk_tail"``)."""
    _log_vocab(vocab_size)
    kind = EstimatorKind(kind)
    if kind is EstimatorKind.TOPK:
        return TopKTruncated(vocab_size)
    return TopKWithTail(vocab_size)


def window_entropy(token_entropies: ArrayLike, window: int, reduction: WindowReduction = "sum") -> float:
    """Reduce the entropies of the first ``window`` tokens of a segment to one number.

    An empty segment has entropy 0 (the reference's behaviour: nothing generated, nothing uncertain).
    """
    if window < 1:
        raise ValueError(f"window={window} must be ≥ 1 (the reference measures the first 20 tokens).")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction={reduction!r} is not one of 'sum' (reference) or 'mean'.")
    h = np.asarray(token_entropies, dtype=np.float64).ravel()[:window]
    if h.size == 0:
        return 0.0
    return float(np.sum(h)) if reduction == "sum" else float(np.mean(h))
