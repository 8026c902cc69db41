r"""Dynamic micro-batches under a token budget, and prompt groups spread over data-parallel ranks.

**Micro-batches.** A padded micro-batch of rows r costs ``|r| · T_r`` tokens, T_r its longest row (rounded up to
``pad_to_multiple_of``). ``plan_micro_batches`` finds k micro-batches with every cost ≤ ``max_tokens``:

1. sort rows by length, longest first (a bin's first row is its longest, so its cost is known at once);
2. starting from k = max(``min_micro_batches``, ⌈Σ lengths / max_tokens⌉), put each row into the bin with the
   fewest real tokens among those it still fits (first-fit decreasing, balanced); if it fits none, k += 1 and
   start again. A row always fits an empty bin, so k ≤ the number of rows.

A trajectory is never split: one that is longer than the budget is an error naming the length to raise it to.
The global loss-token count rides on every micro-batch (``LossScale``), so the token-mean is exact whatever the
split. Ranks must run the same number of micro-batches under FSDP/DeepSpeed: take the max of the counts over ranks
and plan again with ``min_micro_batches`` set to it.

**Ranks.** ``partition_groups`` keeps each prompt group on one rank (design: a group lands on one data-parallel rank)
and balances the tokens: groups in decreasing size, each to the rank with the fewest tokens so far (LPT).
"""

from __future__ import annotations

from collections.abc import Sequence

from arpo_backends.batching.collate import MicroBatch, collate, loss_scale, padded_length
from arpo_backends.batching.samples import TrajectorySample
from arpo_backends.loss.aggregation import LossScale

__all__ = ["make_micro_batches", "partition_groups", "plan_micro_batches"]


def plan_micro_batches(
    lengths: Sequence[int],
    max_tokens: int,
    *,
    min_micro_batches: int = 1,
    pad_to_multiple_of: int = 1,
) -> list[list[int]]:
    """Row indices of each micro-batch (each list in increasing order); every padded cost ≤ ``max_tokens``."""
    n = len(lengths)
    if n == 0:
        return []
    if min_micro_batches < 1:
        raise ValueError(f"min_micro_batches={min_micro_batches} must be ≥ 1.")
    if min_micro_batches > n:
        raise ValueError(
            f"min_micro_batches={min_micro_batches} exceeds the {n} trajectories on this rank; a micro-batch needs a "
            "trajectory, so give each rank at least that many."
        )
    padded = [padded_length(int(x), pad_to_multiple_of) for x in lengths]
    longest = max(range(n), key=lambda i: padded[i])
    if padded[longest] > max_tokens:
        raise ValueError(
            f"trajectory row {longest} has {padded[longest]} tokens (padded), more than max_tokens={max_tokens}; a "
            f"trajectory is never split, so raise the micro-batch token budget to at least {padded[longest]}."
        )
    order = sorted(range(n), key=lambda i: (-padded[i], i))
    k = max(min_micro_batches, -(-sum(padded) // max_tokens))
    while True:
        bins: list[list[int]] = [[] for _ in range(k)]
        real = [0] * k
        placed = True
        for i in order:
            best = -1
            for b in range(k):
                width = padded[bins[b][0]] if bins[b] else padded[i]
                if (len(bins[b]) + 1) * width <= max_tokens and (best < 0 or real[b] < real[best]):
                    best = b
            if best < 0:
                placed = False
                break
            bins[best].append(i)
            real[best] += int(lengths[i])
        if placed:
            return sorted((sorted(b) for b in bins if b), key=lambda b: b[0])
        k += 1


def make_micro_batches(
    samples: Sequence[TrajectorySample],
    *,
    max_tokens: int,
    scale: LossScale | None = None,
    min_micro_batches: int = 1,
    pad_token_id: int = 0,
    pad_to_multiple_of: int = 1,
) -> list[MicroBatch]:
    """Padded micro-batches of ``samples`` under the token budget, each carrying the mini-batch's ``scale``.

    ``scale=None`` takes ``samples`` as the whole mini-batch; on a data-parallel rank pass the ``loss_scale`` of
    the mini-batch over all ranks (with ``data_parallel_size`` when the backend averages gradients).
    """
    scale = scale if scale is not None else loss_scale(samples)
    plan = plan_micro_batches(
        [s.length for s in samples],
        max_tokens,
        min_micro_batches=min_micro_batches,
        pad_to_multiple_of=pad_to_multiple_of,
    )
    return [
        collate(
            [samples[i] for i in rows], scale=scale, pad_token_id=pad_token_id, pad_to_multiple_of=pad_to_multiple_of
        )
        for rows in plan
    ]


def partition_groups(samples: Sequence[TrajectorySample], world_size: int) -> list[list[TrajectorySample]]:
    """``world_size`` lists of samples, each prompt group whole on one rank, tokens balanced (order kept per rank)."""
    if world_size < 1:
        raise ValueError(f"world_size={world_size} must be ≥ 1.")
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.group_id, []).append(i)
    if len(groups) < world_size:
        raise ValueError(
            f"{len(groups)} prompt groups cannot give each of {world_size} ranks one; a group stays on one rank, so "
            "use a mini-batch of at least world_size groups."
        )
    sizes = {g: sum(samples[i].length for i in rows) for g, rows in groups.items()}
    load = [0] * world_size
    assignment: dict[str, int] = {}
    for g in sorted(groups, key=lambda g: (-sizes[g], groups[g][0])):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        assignment[g] = rank
        load[rank] += sizes[g]
    out: list[list[TrajectorySample]] = [[] for _ in range(world_size)]
    for s in samples:
        out[assignment[s.group_id]].append(s)
    return out
