"""The trainer's per-step diagnostics (``ppo_step``): KL, clip fractions, importance weights — by hand.

Two runners drive the shared step. ``_LinearRunner`` has one parameter θ and logp_t = θ·c_t with c_t = −id_t/100;
its "optimiser update" sets θ ← θ − 0.5, so the second mini-batch of a step sees ratio r_t = exp(−0.5·c_t) =
exp(id_t/200) against the prepass's logp_old and every number can be written down. ``_TinyRunner`` is the tiny
random Llama of ``arpo_backends.models.tiny``, for the same checks on a real model and real micro-batches.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

import numpy as np
import pytest
import torch

import arpo_core.report.metrics as metrics_module
from arpo_backends.batching import MicroBatch, TrajectorySample
from arpo_backends.loss import token_log_probs
from arpo_backends.models.tiny import build_tiny_model
from arpo_backends.train.config import TrainerConfig
from arpo_backends.train.dist import DistContext
from arpo_backends.train.step import UPDATE_MEAN_METRICS, ppo_step

CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
PROMPT = [1, 2]


def _sample(
    group: str, index: int, response: list[int], advantage: float, weights: list[float] | None
) -> TrajectorySample:
    """A trajectory whose behaviour logprobs make the raw importance weight exp(c − behav) equal ``weights`` under
    θ = 1 (``None``: the server gave none)."""
    ids = np.array(PROMPT + response, dtype=np.int64)
    mask = np.array([False] * len(PROMPT) + [True] * len(response))
    c = -ids / 100.0
    if weights is None:
        behaviour = np.full(len(ids), np.nan)
    else:
        behaviour = np.concatenate([[np.nan] * len(PROMPT), c[len(PROMPT) :] - np.log(weights)])
    return TrajectorySample(group, index, ids, mask, np.where(mask, advantage, 0.0), behaviour, len(PROMPT))


# mini-batch 1 (ratio 1): raw weights 1, 3, 0.5, 1 -> applied 1, 2 (capped), 0.5, 1
# mini-batch 2 (r = exp(id/200)): 10 -> 1.051, 50 -> 1.284, 250 -> 3.490
SAMPLES = [
    _sample("g1", 0, [20, 30], +1.0, [1.0, 3.0]),
    _sample("g1", 1, [40, 60], -1.0, [0.5, 1.0]),
    _sample("g2", 0, [10, 50, 250], +1.0, [1.0, 1.0, 1.0]),
    _sample("g2", 1, [50, 250], -1.0, None),
]
MINI2_IDS = [10, 50, 250, 50, 250]


class _LinearRunner:
    def __init__(self, *, reference: bool = True) -> None:
        self.theta = torch.nn.Parameter(torch.tensor(1.0))
        self.reference = reference

    def _c(self, mb: MicroBatch) -> torch.Tensor:
        return -mb.input_ids.to(torch.float32) / 100.0

    def token_stats(self, mb: MicroBatch, *, entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.where(mb.loss_mask, self.theta * self._c(mb), 0.0), None

    def reference_log_probs(self, mb: MicroBatch) -> torch.Tensor | None:
        return torch.where(mb.loss_mask, self._c(mb), 0.0) if self.reference else None  # the policy at θ = 1

    def backward(self, loss: torch.Tensor) -> None:
        torch.autograd.backward(loss)

    def update(self) -> tuple[float, float]:
        with torch.no_grad():
            self.theta.sub_(0.5)
        self.theta.grad = None
        return 0.0, 0.1


def _config(**fields: Any) -> TrainerConfig:
    return TrainerConfig.model_validate({"mini_batch_groups": 1, **fields})


def test_step_diagnostics_by_hand() -> None:
    m = ppo_step(_LinearRunner(), SAMPLES, _config(), CPU, device=CPU.device)
    ratios = [math.exp(i / 200) for i in MINI2_IDS]
    tokens = 9  # 4 in the first mini-batch, 5 in the second: every token mean divides by the step's 9
    assert m["updates"] == 2 and m["loss_tokens"] == tokens
    # clipped above: A > 0 and r > 1.2 (ids 50, 250 of g2/0); dual: A < 0 and r > 3 (id 250 of g2/1)
    assert m["clip_frac_high"] == pytest.approx(2 / tokens)
    assert m["clip_frac_low"] == 0.0
    assert m["clip_frac_dual"] == pytest.approx(1 / tokens)
    assert m["ratio_mean"] == pytest.approx((4 + sum(ratios)) / tokens, rel=1e-6)
    assert m["ppo_kl"] == pytest.approx(-sum(i / 200 for i in MINI2_IDS) / tokens, rel=1e-6)
    assert m["approx_kl"] == pytest.approx(sum(r - 1 - math.log(r) for r in ratios) / tokens, rel=1e-5)
    # KL to the reference (θ = 1): 0 on the first mini-batch; δ = c − c/2 = −id/200 on the second (k3)
    k3 = [math.exp(-i / 200) + i / 200 - 1 for i in MINI2_IDS]
    assert m["kl"] == pytest.approx(sum(k3) / tokens, rel=1e-5)
    # importance weights: applied 1, 2, 0.5, 1 then 1 × 5 (known as 1, or unknown)
    assert m["importance_weight_mean"] == pytest.approx(9.5 / tokens, rel=1e-6)
    assert m["importance_weight_max"] == pytest.approx(2.0)
    assert m["importance_weight_raw_max"] == pytest.approx(3.0, rel=1e-5)
    assert m["importance_truncated_frac"] == pytest.approx(1 / tokens)
    assert m["behaviour_known_frac"] == pytest.approx(7 / tokens)
    assert "entropy" not in m  # not computed by this loss: left out, not 0
    # loss and pg_loss stay means over updates: ℓ = −A·r·w per token, each mini-batch's token mean
    first = (-(1 * 1 + 1 * 2) + (0.5 + 1)) / 4
    second = (-(ratios[0] + 1.2 + 1.2) + (ratios[3] + 3.0)) / 5  # g2/0: 50, 250 clipped at 1.2; g2/1: 250 at c = 3
    assert m["pg_loss"] == pytest.approx((first + second) / 2, rel=1e-5)
    assert set(UPDATE_MEAN_METRICS) <= set(m)


def test_step_diagnostics_do_not_depend_on_the_micro_batches() -> None:
    whole = ppo_step(_LinearRunner(), SAMPLES, _config(), CPU, device=CPU.device)
    split = ppo_step(_LinearRunner(), SAMPLES, _config(micro_batch_tokens=5), CPU, device=CPU.device)
    assert set(split) == set(whole)
    for name, value in whole.items():
        assert split[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_unmeasured_terms_are_left_out() -> None:
    unknown = [
        TrajectorySample(s.group_id, s.trajectory, s.token_ids, s.loss_mask, s.advantages, s.advantages * np.nan, 2)
        for s in SAMPLES
    ]
    m = ppo_step(_LinearRunner(reference=False), unknown, _config(), CPU, device=CPU.device)
    assert "kl" not in m and "importance_weight_raw_max" not in m
    assert m["behaviour_known_frac"] == 0.0 and m["importance_weight_max"] == 1.0


# ---------------------------------------------------------------------------------------------- a real tiny model
class _TinyRunner:
    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.optimiser = torch.optim.SGD(model.parameters(), lr=1e-2)

    def token_stats(self, mb: MicroBatch, *, entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.model(input_ids=mb.input_ids, attention_mask=mb.attention_mask).logits
        return torch.where(mb.loss_mask, token_log_probs(logits, mb.input_ids), 0.0), None

    def reference_log_probs(self, mb: MicroBatch) -> torch.Tensor | None:
        with torch.no_grad():
            logp, _ = self.token_stats(mb)
        return torch.where(mb.loss_mask, logp + 0.1, 0.0)  # δ = 0.1 on every loss token

    def backward(self, loss: torch.Tensor) -> None:
        torch.autograd.backward(loss)

    def update(self) -> tuple[float, float]:
        self.optimiser.step()
        self.optimiser.zero_grad()
        return 0.0, 1e-2


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(build_tiny_model(), dtype=torch.float32)


def _tiny_samples(model: torch.nn.Module) -> tuple[list[TrajectorySample], np.ndarray]:
    """Three trajectories with behaviour logprobs = the model's own − ln w, w drawn around 1; returns the raw w."""
    rng = np.random.default_rng(0)
    samples: list[TrajectorySample] = []
    raw: list[float] = []
    for i in range(3):
        ids = rng.integers(5, 400, size=6 + i)
        mask = np.zeros(len(ids), dtype=np.bool_)
        mask[3:] = True
        mask[4] = False  # a tool-result token
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(ids)[None]).logits
            logp = token_log_probs(logits, torch.from_numpy(ids)[None])[0].double().numpy()
        w = np.exp(rng.normal(0.0, 0.6, size=len(ids)))
        raw.extend(w[mask])
        behaviour = np.where(mask, logp - np.log(w), np.nan)
        samples.append(TrajectorySample(f"g{i}", 0, ids, mask, np.where(mask, rng.normal(), 0.0), behaviour, 3))
    return samples, np.array(raw)


def test_tiny_model_step_by_hand_and_split_invariant(tiny: torch.nn.Module) -> None:
    samples, raw = _tiny_samples(tiny)
    runs = [
        ppo_step(
            _TinyRunner(copy.deepcopy(tiny)), samples, TrainerConfig(micro_batch_tokens=budget), CPU, device=CPU.device
        )
        for budget in (4096, 8)  # one micro-batch; one trajectory per micro-batch
    ]
    for m in runs:  # one mini-batch, one epoch: logp_old is the forward's own, r = 1 (the paper's setting)
        assert m["loss_tokens"] == len(raw) and m["updates"] == 1
        assert m["ratio_mean"] == pytest.approx(1.0) and m["clip_frac_high"] == m["clip_frac_dual"] == 0.0
        assert m["kl"] == pytest.approx(math.exp(0.1) - 1.1, rel=1e-4)
        assert m["importance_weight_mean"] == pytest.approx(np.minimum(raw, 2.0).mean(), rel=1e-4)
        assert m["importance_weight_max"] == pytest.approx(min(raw.max(), 2.0), rel=1e-4)
        assert m["importance_weight_raw_max"] == pytest.approx(raw.max(), rel=1e-4)
        assert m["importance_truncated_frac"] == pytest.approx(float((raw > 2.0).mean()))
        assert m["behaviour_known_frac"] == pytest.approx(1.0)
    assert raw.max() > 2.0 > raw.min()  # the cap binds on some tokens, so the checks above can tell
    for name, value in runs[0].items():
        assert runs[1][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_every_trainer_metric_is_in_the_one_table() -> None:
    doc = metrics_module.__doc__ or ""
    documented = set(re.findall(r"^    ([a-z_0-9]+) +(?:rollout|loop|trainer)  ", doc, flags=re.MULTILINE))
    m = ppo_step(_LinearRunner(), SAMPLES, _config(), CPU, device=CPU.device)
    m["policy_version"] = 1.0  # what BaseTrainer.train_samples adds
    assert set(m) <= documented, sorted(set(m) - documented)
