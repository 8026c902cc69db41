r"""Group-relative outcome advantages (GRPO; ARPO spec §3).

For the M trajectories of one prompt group with rewards R_1..R_M::

    Â_i = (R_i − mean(R)) / (std(R) + ε)        normalize_by_std = True  (GRPO, the paper)
    Â_i =  R_i − mean(R)                         normalize_by_std = False (Dr. GRPO style)

``std`` is the sample standard deviation (n − 1 in the denominator) by default, as the reference's verl computes
it with ``torch.std``; ``std_unbiased=False`` gives the population one. ε = 1e-6.

Deviation from verl: verl gives a group of one sample mean 0 and std 1 (so Â = R); a single sample carries no
relative signal, so here its advantage is 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from arpo_core.config import AdvantageConfig

__all__ = ["group_advantages", "group_advantages_from_config"]


def group_advantages(
    rewards: ArrayLike,
    *,
    normalize_by_std: bool = True,
    std_unbiased: bool = True,
    epsilon: float = 1e-6,
) -> NDArray[np.float64]:
    """Advantages of one group, in the order of ``rewards``: ``(M,) -> (M,)``."""
    r = np.asarray(rewards, dtype=np.float64).ravel()
    if r.size == 0:
        raise ValueError("a group needs at least one reward to compute advantages.")
    if not np.all(np.isfinite(r)):
        bad = r[~np.isfinite(r)][0]
        raise ValueError(f"reward {bad} is not finite; every trajectory needs a finite reward before training.")
    if r.size == 1:
        return np.zeros(1)
    centred: NDArray[np.float64] = r - r.mean()
    if not normalize_by_std:
        return centred
    std = float(r.std(ddof=1 if std_unbiased else 0))
    return centred / (std + epsilon)


def group_advantages_from_config(rewards: ArrayLike, config: AdvantageConfig) -> NDArray[np.float64]:
    return group_advantages(
        rewards,
        normalize_by_std=config.normalize_by_std,
        std_unbiased=config.std_unbiased,
        epsilon=config.epsilon,
    )
