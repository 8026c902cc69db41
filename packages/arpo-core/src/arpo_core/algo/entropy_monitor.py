r"""Per-group entropy bookkeeping: ``H_initial`` per root trajectory and ``ΔH_t`` at each tool step (spec §2).

For a root (global) trajectory ``g`` of one prompt group::

    H_initial(g) = W(first segment of g)             (W: the entropy window of a segment, see ``entropy``)
    ΔH_t         = W(segment generated right after tool result t) − H_initial(root(trajectory))

Fixes of the reference code's defects (each has a test):

* *One-step lag.* The reference decides after tool call t with the window measured after tool call t−1 (so
  ΔH = 0 at the first call). Here the caller passes the window of the segment that follows result t itself.
* *Stale state.* The reference keeps ``H_initial`` in a dict created once per worker and keyed by batch slot,
  never reset. Here one ``EntropyMonitor`` belongs to one group and is thrown away with it; a root is recorded
  once, and asking for an unknown root is an error rather than a silent 0.
* *Branches re-rooting.* The reference lets a branch take its own first segment as its ``H_initial``. Here
  branches are not roots: they pass their root's id and inherit its ``H_initial``; recording a second initial
  window for a root is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from arpo_core.algo.entropy import EntropyEstimator, WindowReduction, window_entropy

__all__ = ["EntropyMonitor", "decision_window"]


@dataclass(slots=True)
class EntropyMonitor:
    """Holds ``H_initial`` for the root trajectories of ONE prompt group; create a new one per group."""

    estimator: EntropyEstimator
    window: int = 20
    reduction: WindowReduction = "sum"
    _initial: dict[int, float] = field(default_factory=dict, init=False, repr=False)

    def measure(self, topk_logprobs: Sequence[Sequence[float]]) -> float:
        """The entropy window ``W`` of one segment from its per-token top-k logprobs."""
        head = list(topk_logprobs[: self.window])
        if not head:
            return 0.0
        return window_entropy(self.estimator(head), self.window, self.reduction)

    def record_initial(self, root_id: int, window_value: float) -> float:
        """Record ``H_initial`` of root trajectory ``root_id`` (its first segment's window); once per root."""
        if root_id in self._initial:
            raise ValueError(
                f"H_initial of root trajectory {root_id} is already recorded; branches inherit their root's "
                "H_initial, so pass the root's id instead of recording a new one."
            )
        self._initial[root_id] = float(window_value)
        return self._initial[root_id]

    def initial(self, root_id: int) -> float:
        """``H_initial`` of ``root_id``."""
        try:
            return self._initial[root_id]
        except KeyError:
            raise KeyError(
                f"no H_initial recorded for root trajectory {root_id} in this group; call record_initial() "
                "with the window of its first segment before asking for ΔH."
            ) from None

    def delta(self, root_id: int, window_value: float) -> float:
        """``ΔH_t = W(segment after tool result t) − H_initial(root)``."""
        return float(window_value) - self.initial(root_id)

    @property
    def initial_windows(self) -> Mapping[int, float]:
        """A read-only view of ``H_initial`` per root recorded so far."""
        return dict(self._initial)


def decision_window(entropy: float | None, branch_budget: int) -> float:
    """The entropy window a decision uses; a segment without top-k logprobs only works when nothing can branch.

    Without logprobs (e.g. a hosted API) ARPO cannot measure ΔH: with branch slots left that is an error naming
    the fix; with none (GRPO, N = M) the window is irrelevant and 0 is used.
    """
    if entropy is not None:
        return entropy
    if branch_budget > 0:
        raise ValueError(
            "the server returned no top-k logprobs, which ARPO's branching needs; request logprobs "
            "(entropy.top_logprobs ≥ 1) or set global_samples equal to budget for GRPO sampling."
        )
    return 0.0
