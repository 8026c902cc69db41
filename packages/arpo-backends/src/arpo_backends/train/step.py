r"""One PPO/GRPO step over a step's trajectories, shared by every backend (the backend only runs the model).

A step's trajectories (all ranks see the same list) are cut into mini-batches of ``mini_batch_groups`` prompt
groups, one optimiser update each, repeated ``ppo_epochs`` times (paper: 128 prompts, mini-batches of 16, one
epoch). Within a mini-batch each prompt group goes whole to one rank (``partition_groups``) and each rank cuts its
share into micro-batches under the token budget. Every micro-batch carries the mini-batch's ``LossScale``, so the
losses of all micro-batches and ranks add up to the exact token-mean, whatever the split (``loss.aggregation``).

Collectives need every rank to run the same number of forward/backward passes (FSDP gathers parameters in each,
ZeRO-2/3 reduce gradients in each), so the micro-batch count is the maximum over ranks; a rank with fewer pads
with one-token micro-batches whose loss mask is empty (loss and gradient exactly 0).

``logp_old`` is the policy's own logprob at the start of the step. With one mini-batch and one epoch it equals
the logprob of the forward pass being differentiated, so it is taken from it (``detach``) and the ratio is 1, as
in the paper; otherwise a no-grad pass over all micro-batches computes it first (as verl). That pass also sums
AEPO's entropy moments over the mini-batch when the entropy-aware advantage is on.

Metrics of a step (``ppo_step``'s return; named and defined in the table of ``arpo_core.report.metrics``):
``loss`` and ``pg_loss`` are the mean over the step's optimiser updates of each mini-batch's objective; every other
per-token metric (``kl``, ``clip_frac_*``, ``ratio_mean``, ``importance_*``, ...) is a token mean over all the loss
tokens of the step — every update, micro-batch and rank — weighting each token once, so splitting a mini-batch
into micro-batches or over ranks does not change it; ``importance_weight_max`` and ``importance_weight_raw_max``
are maxima over the same tokens (the raw one is left out when no token had a behaviour logprob).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist

from arpo_backends.batching import MicroBatch, TrajectorySample, collate, loss_scale, make_micro_batches
from arpo_backends.batching.plan import partition_groups, plan_micro_batches
from arpo_backends.loss import LossConfig, LossOutput, arpo_loss, entropy_moments, sum_metrics
from arpo_backends.train.config import TrainerConfig
from arpo_backends.train.dist import DistContext

__all__ = ["UPDATE_MEAN_METRICS", "ModelRunner", "mini_batches", "ppo_step", "rank_micro_batches", "sft_step"]

UPDATE_MEAN_METRICS = ("loss", "pg_loss")
"""Metrics averaged over the step's optimiser updates (each is one update's objective); the other per-token
metrics are token means over the whole step."""


class ModelRunner(Protocol):
    """What a backend gives the shared step: forward passes, backward, and the optimiser update."""

    def token_stats(self, mb: MicroBatch, *, entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, T)`` logprobs (with autograd when grad mode is on) and, if asked, entropies of the loss tokens
        under the policy being trained (0 off the loss mask)."""
        ...

    def reference_log_probs(self, mb: MicroBatch) -> torch.Tensor | None:
        """``(B, T)`` logprobs of the KL reference (no grad), or ``None`` when the loss needs none."""
        ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def update(self) -> tuple[float, float]:
        """Clip, optimiser step, scheduler step, zero grads; returns (grad norm before clipping, lr used)."""
        ...


def mini_batches(samples: Sequence[TrajectorySample], groups_per_update: int | None) -> list[list[TrajectorySample]]:
    """``samples`` cut into mini-batches of ``groups_per_update`` prompt groups, in the order groups first appear."""
    order: dict[str, list[TrajectorySample]] = {}
    for s in samples:
        order.setdefault(s.group_id, []).append(s)
    groups = list(order.values())
    size = groups_per_update or len(groups)
    return [[s for g in groups[i : i + size] for s in g] for i in range(0, len(groups), size)]


def _padding_micro_batch(like: MicroBatch | None, scale: object, pad_token_id: int) -> MicroBatch:
    token = int(like.input_ids[0, 0]) if like is not None else pad_token_id
    sample = TrajectorySample(
        group_id="<padding>",
        trajectory=-1,
        token_ids=np.array([token], dtype=np.int64),
        loss_mask=np.zeros(1, dtype=np.bool_),
        advantages=np.zeros(1),
        behaviour_logprobs=np.full(1, np.nan),
        prompt_length=1,
    )
    return collate([sample], scale=scale, pad_token_id=pad_token_id)  # type: ignore[arg-type]


def rank_micro_batches(
    mini: Sequence[TrajectorySample], config: TrainerConfig, ctx: DistContext, *, pad_token_id: int = 0
) -> list[MicroBatch]:
    """This rank's micro-batches of one mini-batch, as many as the busiest rank's (padded with empty ones)."""
    scale = loss_scale(mini, data_parallel_size=ctx.world_size)
    mine = partition_groups(mini, ctx.world_size)[ctx.rank]
    planned = len(plan_micro_batches([s.length for s in mine], config.micro_batch_tokens))
    count = ctx.all_reduce_max(planned)
    micro = make_micro_batches(
        mine,
        max_tokens=config.micro_batch_tokens,
        scale=scale,
        min_micro_batches=min(count, len(mine)),
        pad_token_id=pad_token_id,
    )
    while len(micro) < count:
        micro.append(_padding_micro_batch(micro[0] if micro else None, scale, pad_token_id))
    return micro


@dataclass
class _Prepass:
    old_log_probs: list[list[torch.Tensor]]
    moments: list[torch.Tensor | None]


def _needs_entropy(loss: LossConfig) -> bool:
    return loss.entropy_coef > 0 or loss.entropy_aware_advantage


def _prepass(runner: ModelRunner, plans: list[list[MicroBatch]], config: TrainerConfig, ctx: DistContext) -> _Prepass:
    old: list[list[torch.Tensor]] = []
    moments: list[torch.Tensor | None] = []
    with torch.no_grad():
        for plan in plans:
            logps: list[torch.Tensor] = []
            total = torch.zeros(3, dtype=torch.float64)
            for mb in plan:
                logp, h = runner.token_stats(mb, entropy=config.loss.entropy_aware_advantage)
                logps.append(logp.detach())
                if h is not None:
                    total += entropy_moments(h, mb.loss_mask).cpu()
            old.append(logps)
            if config.loss.entropy_aware_advantage:
                summed = ctx.all_reduce_sum({"n": float(total[0]), "s1": float(total[1]), "s2": float(total[2])})
                moments.append(torch.tensor([summed["n"], summed["s1"], summed["s2"]], dtype=torch.float64))
            else:
                moments.append(None)
    return _Prepass(old, moments)


def ppo_step(
    runner: ModelRunner,
    samples: Sequence[TrajectorySample],
    config: TrainerConfig,
    ctx: DistContext,
    *,
    device: torch.device,
    pad_token_id: int = 0,
) -> dict[str, float]:
    """Every update of one step; returns its metrics (see the module docstring for how each is aggregated)."""
    if not samples:
        raise ValueError("train_step got no trajectories; a step needs at least one prompt group per rank.")
    minis = mini_batches(samples, config.mini_batch_groups)
    plans = [[mb.to(device) for mb in rank_micro_batches(m, config, ctx, pad_token_id=pad_token_id)] for m in minis]
    prepass = None
    if len(minis) > 1 or config.ppo_epochs > 1 or config.loss.entropy_aware_advantage:
        prepass = _prepass(runner, plans, config, ctx)

    totals: dict[str, float] = {}  # update means: summed shares; token means: summed numerators (share × N)
    maxima: dict[str, float] = {}
    step_tokens = 0.0  # loss tokens of every update, all ranks
    grad_norms: list[float] = []
    lr = 0.0
    for _epoch in range(config.ppo_epochs):
        for i, plan in enumerate(plans):
            outputs: list[LossOutput] = []
            for j, mb in enumerate(plan):
                logp, entropy = runner.token_stats(mb, entropy=_needs_entropy(config.loss))
                ref = runner.reference_log_probs(mb)
                out = arpo_loss(
                    logp,
                    prepass.old_log_probs[i][j] if prepass is not None else logp.detach(),
                    mb.advantages,
                    mb.loss_mask,
                    config=config.loss,
                    scale=mb.scale,
                    behaviour_log_prob=mb.behaviour_logprobs,
                    ref_log_prob=ref,
                    entropy=entropy,
                    entropy_moments=prepass.moments[i] if prepass is not None else None,
                )
                runner.backward(out.loss)
                outputs.append(out)
            norm, lr = runner.update()
            grad_norms.append(norm)
            mini_tokens = plan[0].scale.global_tokens if plan else 0.0  # the same on every rank
            step_tokens += mini_tokens
            for name, value in sum_metrics(outputs).items():
                weight = 1.0 if name in UPDATE_MEAN_METRICS or name == "loss_tokens" else mini_tokens
                totals[name] = totals.get(name, 0.0) + value * weight
            for out in outputs:
                for name, tensor in out.maxima.items():
                    maxima[name] = max(maxima.get(name, 0.0), float(tensor))
    totals = ctx.all_reduce_sum(totals)
    maxima = _all_reduce_max(ctx, maxima)
    updates = len(plans) * config.ppo_epochs
    metrics = {
        name: value / updates if name in UPDATE_MEAN_METRICS else value / max(step_tokens, 1.0)
        for name, value in totals.items()
    }
    metrics["loss_tokens"] = totals.get("loss_tokens", 0.0) / config.ppo_epochs
    if "importance_weight_max" in maxima:
        metrics["importance_weight_max"] = maxima["importance_weight_max"]
    if maxima.get("importance_weight_raw_max", 0.0) > 0.0:  # 0: no loss token had a behaviour logprob
        metrics["importance_weight_raw_max"] = maxima["importance_weight_raw_max"]
    metrics["grad_norm"] = float(np.mean(grad_norms))
    metrics["lr"] = lr
    metrics["updates"] = float(updates)
    metrics["trajectories"] = float(len(samples))
    return metrics


def _all_reduce_max(ctx: DistContext, values: dict[str, float]) -> dict[str, float]:
    """Every rank's ``values`` combined key by key with ``max`` (all ranks pass the same keys)."""
    names = sorted(values)
    if not dist.is_initialized() or ctx.world_size == 1:
        return {n: float(values[n]) for n in names}
    device = ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([float(values[n]) for n in names], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return {n: float(v) for n, v in zip(names, tensor.tolist(), strict=True)}


def sft_step(
    runner: ModelRunner,
    samples: Sequence[TrajectorySample],
    config: TrainerConfig,
    ctx: DistContext,
    *,
    device: torch.device,
    pad_token_id: int = 0,
) -> dict[str, float]:
    """One optimiser update of the SFT cold start: token-mean NLL on the loss-mask tokens of ``samples``."""
    from arpo_backends.sft.loss import sft_loss

    if not samples:
        raise ValueError("sft_step got no demonstrations; a step needs at least one per rank.")
    outputs = []
    for mb in rank_micro_batches(samples, config, ctx, pad_token_id=pad_token_id):
        mb = mb.to(device)
        logp, _ = runner.token_stats(mb)
        out = sft_loss(logp, mb.loss_mask, mb.scale)
        runner.backward(out.loss)
        outputs.append(out)
    norm, lr = runner.update()
    metrics = ctx.all_reduce_sum(sum_metrics(outputs))
    metrics.update(grad_norm=norm, lr=lr, sequences=float(len(samples)))
    return metrics
