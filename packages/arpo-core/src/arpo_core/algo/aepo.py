r"""AEPO's two rollout-side refinements of ARPO (arXiv 2510.14545), both off by default.

Entropy pre-monitoring sizes the number of global samples per prompt::

    N = int(M · σ(0.5 · (H_root − mean_t H_tool,t))) + 1,     clipped to [N_min, M]

where ``H_root`` is the entropy window of the answer to the bare prompt and ``H_tool,t`` the windows after
tool results in a short pre-rollout: a prompt whose first step is more uncertain than its tool steps gets more
whole trajectories, one whose tool steps are more uncertain gets more branch slots. With no tool window at all
there is no branching signal: N = M, or the caller's ``fallback``.

Where the rollout takes the entropies from (``BranchScheduler.start_premonitored`` and ``size_global_samples``,
driven by ``runtime.group_rollout``): the pre-rollout is the group's own first global trajectory, launched alone.

* ``H_root`` = the window of its first segment (its ``H_initial``);
* ``mean H_tool`` = the window of the segment it generates right after its *first* tool result (a one-sample
  mean: waiting for later tool steps would hold the other N − 1 trajectories back longer);
* N is fixed at that moment, before that segment's branch decision and before the other N − 1 global samples
  are launched. If the trajectory ends before a segment follows a tool result (it answered without a tool, hit
  the call limit or the token budget), N is the configured ``global_samples`` (``fallback``): one trajectory
  without a tool step says nothing about the prompt's tool steps.

Deviation from AEPO: AEPO pre-monitors with a separate pre-rollout; here the pre-rollout is kept as the group's
first trajectory (no sample is wasted), so the group is deterministic under its seed like every ARPO group. The
cost is latency: the other trajectories start one tool round later.

The consecutive-branch penalty damps a lineage that keeps branching::

    P'_t = P_t · (1 − c · l)                                   (AEPO: c = 0.05)

with ``l`` the number of consecutive positive branch decisions along the lineage so far (reset by a negative
one, inherited by the branches it spawns). ``P'_t`` is not clipped here; the branch rule clips.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["consecutive_branch_factor", "dynamic_global_samples"]


def dynamic_global_samples(
    budget: int,
    root_entropy: float,
    tool_entropies: Sequence[float],
    minimum: int = 1,
    *,
    fallback: int | None = None,
) -> int:
    """N for one prompt from pre-monitored entropies, in ``[minimum, budget]``; with no tool entropy there is no
    branching signal: N = ``fallback`` (default M), still at least ``minimum``."""
    if budget < 1:
        raise ValueError(f"budget={budget} must be ≥ 1.")
    floor = min(minimum, budget)
    if not tool_entropies:
        return budget if fallback is None else max(floor, min(budget, fallback))
    gap = root_entropy - sum(tool_entropies) / len(tool_entropies)
    if math.isnan(gap):
        raise ValueError("an entropy of the pre-rollout is NaN; AEPO sizing needs numbers.")
    sigma = _sigmoid(0.5 * gap)
    n = int(budget * sigma) + 1
    return max(floor, min(budget, n))


def _sigmoid(x: float) -> float:
    """σ(x) without overflow for any finite or infinite x."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def consecutive_branch_factor(penalty: float, consecutive: int) -> float:
    """``1 − c·l`` floored at 0: the multiplier AEPO applies to ``P_t`` after ``l`` consecutive branches."""
    if consecutive < 0:
        raise ValueError(f"consecutive={consecutive} must be ≥ 0.")
    return max(0.0, 1.0 - penalty * consecutive)
