r"""The branching scheduler of one prompt group: entropy-based adaptive rollout (ARPO §3.1, spec §2).

Budget: ``M`` trajectories per prompt; ``N`` start from the bare prompt ("global"), ``M − N`` slots are for
branches. After tool call ``t`` of a trajectory, once the segment that follows the result has been generated::

    ΔH_t = W(segment after result t) − H_initial(root)          (see ``entropy_monitor``)
    P_t  = (α + β·ΔH_t) · (1 − c·l)                              (c = 0 unless AEPO's penalty is on)
    stochastic rule (reference code):  branch iff u < clip(P_t, 0, 1),  u ~ U[0, 1)
    threshold rule (paper):            branch iff P_t > τ

A positive decision spawns ``min(Z, slots left)`` branches that restart from the post-result prefix (the
trajectory itself continues with the segment already generated). Branches inherit the root's ``H_initial`` and
may branch again at later tool calls. Once ``M − N`` branches exist no more are made. When no running trajectory
can still branch (all finished or at ``call_limit``) and the group has fewer than ``M``, fresh global samples
("fill") are added until it has exactly ``M``; fills never branch, since they use up exactly the slots left.

This class only decides; it owns no tasks, clients or tokens (the runtime does). It is deterministic under a
seed *whatever order the runtime calls it in*: each uniform draw is keyed by ``(seed, lineage, tool step)``,
where the lineage names a trajectory by how it was spawned (k-th global sample; j-th branch after result t of
its parent) rather than by the order slots were handed out, and no draw comes from a shared stream. So
concurrent rollouts finishing in a different order draw the same numbers; only who gets the last branch slots
can depend on order, as it must.

Deviations from the reference code (each has a test): the decision after tool call t uses the window measured
after result t (no one-step lag); branch ids and ``H_initial`` are per group (no stale state); branches keep
their root (no re-rooting); the budget is filled with fresh global samples rather than by duplicating the last
trajectory. ``N = M`` never branches and is exactly GRPO sampling.

AEPO entropy pre-monitoring (``dynamic_global_samples``, see ``aepo``): ``start_premonitored`` hands out only the
first global trajectory; once the runtime has its first-segment window and the window after its first tool result
(or it is about to end without one), ``size_global_samples`` fixes N for the group and hands out the other N − 1.
Until then nothing fills, decides or finishes, so the sizing always happens before the first branch decision.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from arpo_core.algo.aepo import consecutive_branch_factor, dynamic_global_samples
from arpo_core.config import BranchingConfig

__all__ = ["BranchDecision", "BranchScheduler", "Origin", "TrajectorySlot", "group_seed", "request_seed"]


class Origin(str, Enum):
    """How a trajectory of a group was started."""

    GLOBAL = "global"
    """From the bare prompt, one of the N."""
    BRANCH = "branch"
    """From the prefix of another trajectory right after one of its tool results."""
    FILL = "fill"
    """From the bare prompt, added at the end because branches did not use up the budget."""


@dataclass(frozen=True, slots=True)
class TrajectorySlot:
    """One of the M trajectories of a group, as the scheduler knows it."""

    index: int
    """0..M−1, unique within the group."""
    origin: Origin
    root: int
    """The global (or fill) trajectory whose ``H_initial`` this one uses; itself for globals and fills."""
    parent: int | None = None
    """For a branch: the trajectory it was copied from."""
    branch_step: int = 0
    """For a branch: the tool step t after whose result it restarts, i.e. the tool calls it inherits."""
    consecutive: int = 0
    """AEPO's l inherited from the lineage at birth."""
    lineage: tuple[int, ...] = ()
    """How the trajectory was spawned, independent of the order events happened in: ``(0, k)`` for the k-th
    global sample, ``(1, k)`` for the k-th fill, ``parent.lineage + (t, j)`` for the j-th branch spawned after
    the parent's tool result t. Branch draws are keyed by it."""


@dataclass(frozen=True, slots=True)
class BranchDecision:
    """What the scheduler decided after tool result ``tool_step`` of ``trajectory`` (for logs and metrics)."""

    trajectory: int
    tool_step: int
    delta_entropy: float
    probability: float
    """P_t after the AEPO penalty, before clipping."""
    draw: float | None
    """The uniform draw u of the stochastic rule; None for the threshold rule or when no draw was needed."""
    positive: bool
    """The rule said branch (whether or not budget was left)."""
    children: tuple[TrajectorySlot, ...]
    """Branches granted: ``min(Z, slots left)`` when positive, else none."""
    reason: str
    """One of: ``branch``, ``no_branch``, ``budget_exhausted``, ``call_limit``, ``fill_never_branches``."""


def group_seed(run_seed: int, group_key: str | int) -> int:
    """A per-group seed from the run's seed and a stable group key, so groups draw independent numbers."""
    digest = hashlib.blake2b(f"{run_seed}\x00{group_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def request_seed(group_seed_value: int, lineage: tuple[int, ...]) -> int:
    """The sampling seed for every generation request of one trajectory (a 31-bit int, as servers accept).

    Keyed by the group's seed and the trajectory's lineage, so a run is reproducible whatever order its
    requests are served in, and two trajectories never share a seed (they would sample the same tokens).
    """
    key = ",".join(map(str, (group_seed_value, *lineage))).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & 0x7FFFFFFF


@dataclass
class BranchScheduler:
    """Decides, for one prompt group, how its sampling budget is spent. Create one per group."""

    config: BranchingConfig
    seed: int = 0
    global_samples: int | None = None
    """Override of N for this group (AEPO pre-monitoring); defaults to ``config.global_samples``."""
    _sized: bool = field(default=False, init=False, repr=False)
    _awaiting_size: bool = field(default=False, init=False, repr=False)
    _slots: list[TrajectorySlot] = field(default_factory=list, init=False, repr=False)
    _active: set[int] = field(default_factory=set, init=False, repr=False)
    _last_step: dict[int, int] = field(default_factory=dict, init=False, repr=False)
    _consecutive: dict[int, int] = field(default_factory=dict, init=False, repr=False)
    _decisions: list[BranchDecision] = field(default_factory=list, init=False, repr=False)
    _started: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        n = self.config.global_samples if self.global_samples is None else self.global_samples
        if not 1 <= n <= self.config.budget:
            raise ValueError(f"global_samples={n} must be between 1 and budget={self.config.budget}.")
        if self.seed < 0:
            raise ValueError(f"seed={self.seed} must be ≥ 0.")
        self._sized = self.global_samples is not None
        self.global_samples = n

    @classmethod
    def for_group(
        cls,
        config: BranchingConfig,
        seed: int,
        *,
        root_entropy: float | None = None,
        tool_entropies: Sequence[float] = (),
    ) -> BranchScheduler:
        """A scheduler for one group; with ``dynamic_global_samples`` on, N comes from AEPO pre-monitoring.

        ``root_entropy`` and ``tool_entropies`` are the entropy windows of a short pre-rollout of this prompt
        (the first segment, and the segments after tool results); without them N is the configured one.
        """
        n = None
        if config.dynamic_global_samples and root_entropy is not None:
            n = _aepo_n(config, root_entropy, tool_entropies)
        return cls(config, seed=seed, global_samples=n)

    # ------------------------------------------------------------------ budget
    @property
    def budget(self) -> int:
        """M."""
        return self.config.budget

    @property
    def n_global(self) -> int:
        """N for this group (the configured one while ``awaiting_size``)."""
        assert self.global_samples is not None
        return self.global_samples

    @property
    def branch_budget(self) -> int:
        """M − N."""
        return self.budget - self.n_global

    @property
    def branches_created(self) -> int:
        return sum(1 for s in self._slots if s.origin is Origin.BRANCH)

    @property
    def slots(self) -> tuple[TrajectorySlot, ...]:
        return tuple(self._slots)

    @property
    def decisions(self) -> tuple[BranchDecision, ...]:
        return tuple(self._decisions)

    @property
    def active(self) -> frozenset[int]:
        return frozenset(self._active)

    @property
    def needs_premonitoring(self) -> bool:
        """N is sized per group (``dynamic_global_samples``) and was not given: start with ``start_premonitored``."""
        return self.config.dynamic_global_samples and not self._sized

    @property
    def awaiting_size(self) -> bool:
        """``start_premonitored`` was called and ``size_global_samples`` not yet."""
        return self._awaiting_size

    @property
    def done(self) -> bool:
        """Every one of the M trajectories exists and has finished."""
        return self._started and len(self._slots) == self.budget and not self._active

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> tuple[TrajectorySlot, ...]:
        """The N global trajectories to launch from the bare prompt; call once (or ``start_premonitored``)."""
        self._begin("start()")
        if self.needs_premonitoring:
            raise ValueError(
                "algo.branching.dynamic_global_samples=True sizes N per prompt, which start() cannot do; expand the "
                "group with start_premonitored() and size_global_samples() (the async rollout engine does), or turn "
                "dynamic_global_samples off."
            )
        return tuple(self._new_slot(Origin.GLOBAL, lineage=(0, k)) for k in range(self.n_global))

    def start_premonitored(self) -> TrajectorySlot:
        """AEPO pre-monitoring: only the first global trajectory; ``size_global_samples`` launches the others."""
        self._begin("start_premonitored()")
        if not self.needs_premonitoring:
            raise ValueError(
                "start_premonitored() sizes N from entropies, but this group's N is fixed (dynamic_global_samples "
                "is off, or global_samples was given); call start() instead."
            )
        self._awaiting_size = True
        return self._new_slot(Origin.GLOBAL, lineage=(0, 0))

    def size_global_samples(
        self, root_entropy: float, tool_entropies: Sequence[float] = ()
    ) -> tuple[TrajectorySlot, ...]:
        """Fix N from the first trajectory's ``H_root`` and post-tool windows (see ``aepo``); the N − 1 global
        trajectories still to launch. No tool window: N is the configured ``global_samples``."""
        if not self._awaiting_size:
            raise RuntimeError("size_global_samples() needs a group started with start_premonitored(), once.")
        n = _aepo_n(self.config, root_entropy, tool_entropies)
        self.global_samples = n
        self._sized = True
        self._awaiting_size = False
        return tuple(self._new_slot(Origin.GLOBAL, lineage=(0, k)) for k in range(1, n))

    def _begin(self, name: str) -> None:
        if self._started:
            raise RuntimeError(f"{name}: start was already called for this group; create a new scheduler per group.")
        self._started = True

    def decide(self, trajectory: int, tool_step: int, delta_entropy: float) -> BranchDecision:
        """Decide after tool result ``tool_step`` (1-based) of ``trajectory``, given ``ΔH`` of the next segment."""
        slot = self._running(trajectory)
        if self._awaiting_size:
            raise RuntimeError("decide(): call size_global_samples() first, so the branch budget M − N is known.")
        last = self._last_step.get(trajectory, slot.branch_step)
        if tool_step <= last:
            raise ValueError(
                f"tool_step={tool_step} for trajectory {trajectory} is not after its previous step {last}; "
                "decide once per tool result, in order."
            )
        self._last_step[trajectory] = tool_step
        l_now = self._consecutive.get(trajectory, slot.consecutive)
        p = (self.config.alpha + self.config.beta * float(delta_entropy)) * consecutive_branch_factor(
            self.config.consecutive_branch_penalty, l_now
        )

        def record(positive: bool, draw: float | None, reason: str, children: int = 0) -> BranchDecision:
            kids = tuple(
                self._new_slot(
                    Origin.BRANCH,
                    root=slot.root,
                    parent=trajectory,
                    branch_step=tool_step,
                    consecutive=l_now + 1,
                    lineage=(*slot.lineage, tool_step, j),
                )
                for j in range(children)
            )
            self._consecutive[trajectory] = l_now + 1 if kids else 0
            decision = BranchDecision(trajectory, tool_step, float(delta_entropy), p, draw, positive, kids, reason)
            self._decisions.append(decision)
            return decision

        if slot.origin is Origin.FILL:
            return record(False, None, "fill_never_branches")
        if math.isnan(p):
            raise ValueError(
                f"ΔH={delta_entropy} for trajectory {trajectory} at tool step {tool_step} is NaN; the entropy "
                "window of a segment must be a number (check the server's top-k logprobs)."
            )
        if tool_step > self.config.call_limit:
            return record(False, None, "call_limit")
        draw: float | None = None
        if self.config.branch_rule == "stochastic":
            draw = self._draw(slot.lineage, tool_step)
            positive = draw < min(max(p, 0.0), 1.0)
        else:
            positive = p > self.config.tau
        left = self.branch_budget - self.branches_created
        if not positive:
            return record(False, draw, "no_branch")
        if left <= 0:
            return record(True, draw, "budget_exhausted")
        return record(True, draw, "branch", children=min(self.config.branches_per_decision, left))

    def finish(self, trajectory: int) -> None:
        """Trajectory ended (answer, EOS, token budget, call limit or error)."""
        self._running(trajectory)
        if self._awaiting_size:
            raise RuntimeError("finish(): call size_global_samples() before the pre-monitoring trajectory ends.")
        self._active.discard(trajectory)

    def fill(self) -> tuple[TrajectorySlot, ...]:
        """Fresh global samples to add now so the group ends with exactly M; empty until none can branch."""
        if not self._started:
            raise RuntimeError("call start() before fill().")
        missing = self.budget - len(self._slots)
        if self._awaiting_size or missing <= 0 or any(self._may_branch(i) for i in self._active):
            return ()
        fills = sum(1 for s in self._slots if s.origin is Origin.FILL)
        return tuple(self._new_slot(Origin.FILL, lineage=(1, fills + k)) for k in range(missing))

    # ------------------------------------------------------------------ internals
    def _may_branch(self, trajectory: int) -> bool:
        slot = self._slots[trajectory]
        last = self._last_step.get(trajectory, slot.branch_step)
        return slot.origin is not Origin.FILL and last < self.config.call_limit

    def _running(self, trajectory: int) -> TrajectorySlot:
        if trajectory not in self._active:
            state = "finished" if 0 <= trajectory < len(self._slots) else "unknown"
            raise ValueError(f"trajectory {trajectory} is {state} in this group; only running ones can act.")
        return self._slots[trajectory]

    def _new_slot(
        self,
        origin: Origin,
        *,
        root: int | None = None,
        parent: int | None = None,
        branch_step: int = 0,
        consecutive: int = 0,
        lineage: tuple[int, ...] = (),
    ) -> TrajectorySlot:
        index = len(self._slots)
        if index >= self.budget:  # pragma: no cover - guarded by the callers; a bug if reached
            raise AssertionError(f"scheduler would exceed budget M={self.budget}")
        slot = TrajectorySlot(index, origin, index if root is None else root, parent, branch_step, consecutive, lineage)
        self._slots.append(slot)
        self._active.add(index)
        return slot

    def _draw(self, lineage: tuple[int, ...], tool_step: int) -> float:
        """A uniform number in [0, 1) that depends only on (seed, lineage, tool step): 53 bits of a keyed hash."""
        key = ",".join(map(str, (self.seed, *lineage, tool_step))).encode()
        bits = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 11
        return bits / float(1 << 53)


def _aepo_n(config: BranchingConfig, root_entropy: float, tool_entropies: Sequence[float]) -> int:
    return dynamic_global_samples(
        config.budget,
        root_entropy,
        tool_entropies,
        config.dynamic_global_samples_min,
        fallback=config.global_samples,
    )
