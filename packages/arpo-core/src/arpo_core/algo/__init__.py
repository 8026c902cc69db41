"""ARPO's algorithm as pure, synchronous, numpy-only code; one idea per module.

* :mod:`~arpo_core.algo.entropy` — token-entropy estimators and the entropy window of a segment.
* :mod:`~arpo_core.algo.entropy_monitor` — ``H_initial`` per root trajectory and ``ΔH_t`` for one group.
* :mod:`~arpo_core.algo.branching` — the ``BranchScheduler`` (budget M, N, Z, α, β, τ, fill, call limit).
* :mod:`~arpo_core.algo.aepo` — AEPO's pre-monitoring sizing of N and consecutive-branch penalty.
* :mod:`~arpo_core.algo.advantages` — GRPO group normalisation of outcome rewards.
* :mod:`~arpo_core.algo.attribution` — soft/hard attribution of advantages to the tokens of a rollout tree.
* :mod:`~arpo_core.algo.rewards` — F1/EM, math equivalence, format check, tool bonus.

The modules are imported one by one (``from arpo_core.algo.branching import BranchScheduler``); this package
file imports nothing, so that the config module can use the algorithm's enums without an import cycle.
"""
