"""Validated configs for the algorithm, with the paper's defaults (spec §2–§5).

Every model is frozen and forbids unknown keys, so a typo in a run file is an error, not a silently ignored
option. ``load_config`` reads TOML, YAML or JSON and applies ``section.key=value`` overrides (as the CLI's
``--set``); every failure is a ``ConfigError`` whose message is one sentence naming the bad value and the fix.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from arpo_core.algo.entropy import EstimatorKind
from arpo_core.algo.rewards.config import RewardConfig
from arpo_core.toolcalls.calls import ToolCallParser

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "AdvantageConfig",
    "AlgoConfig",
    "ArpoConfig",
    "BranchingConfig",
    "ConfigError",
    "EntropyConfig",
    "RewardConfig",
    "RolloutConfig",
    "ToolCallConfig",
    "TrainConfig",
    "load_config",
    "validate_config",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class EntropyConfig(_Frozen):
    """How token entropy is measured during rollout (spec §2)."""

    estimator: EstimatorKind = EstimatorKind.TOPK
    """``topk``: truncated top-k sum (reference, a lower bound); ``topk_tail``: plus a uniform tail for the
    missing mass (an upper bound)."""
    top_logprobs: int = Field(default=10, ge=1, le=20)
    """Top-k logprobs requested per generated token. Reference: 10. vLLM allows at most 20 by default."""
    window: int = Field(default=20, ge=1)
    """Entropy window: the first k generated tokens of a segment. Reference: 20 (the paper gives no number)."""
    reduction: Literal["sum", "mean"] = "sum"
    """Reduction over the window. ``sum`` is the reference's, so that the published α and β mean the same."""
    vocab_size: int | None = Field(default=None, ge=2)
    """|V| for the ``ln|V|`` normalisation; ``None`` takes it from the model's tokenizer."""


class BranchingConfig(_Frozen):
    """Entropy-based adaptive rollout for one prompt group (spec §2); ``global_samples == budget`` is GRPO."""

    budget: int = Field(default=16, ge=1)
    """M: trajectories per prompt in total. Paper: 16 (12 for 14B models)."""
    global_samples: int = Field(default=8, ge=1)
    """N: trajectories started from the bare prompt; the other M − N slots are for branches. Paper: 8 (6 for 14B).
    With ``dynamic_global_samples`` on: the N of a group whose first trajectory ends before a tool result."""
    branches_per_decision: int = Field(default=1, ge=1)
    """Z: branches spawned by one positive decision. Reference: beam_size = 2, i.e. Z = 1."""
    alpha: float = 0.5
    """α in P_t = α + β·ΔH_t. Paper: 0.5."""
    beta: float = 0.2
    """β in P_t = α + β·ΔH_t. Paper: 0.2 (ablations: 0.2–0.4 work best)."""
    tau: float = 0.5
    """τ: the threshold rule branches when P_t > τ. Paper: 0.5. Unused by the stochastic rule."""
    branch_rule: Literal["stochastic", "threshold"] = "stochastic"
    """``stochastic`` (reference code): branch with probability clip(P_t, 0, 1); ``threshold`` (paper): P_t > τ."""
    call_limit: int = Field(default=3, ge=0)
    """Most tool calls one trajectory may make; a further call ends it. Reasoning: 3; deep search: 6."""
    consecutive_branch_penalty: float = Field(default=0.0, ge=0.0, le=1.0)
    """AEPO: P_t·(1 − c·l) after l consecutive branches of a lineage. 0 = off (ARPO); AEPO uses 0.05."""
    dynamic_global_samples: bool = False
    """AEPO entropy pre-monitoring: N = int(M·σ(0.5·(H_root − mean H_tool))) + 1 per prompt, with H_root the first
    segment's window of the group's first trajectory and H_tool the window after its first tool result (the other
    global samples start once it is known). Off in ARPO. Needs the server's top-k logprobs."""
    dynamic_global_samples_min: int = Field(default=1, ge=1)
    """Lower bound on N when ``dynamic_global_samples`` is on (an error otherwise, unless left at 1)."""

    @model_validator(mode="after")
    def _check_budget(self) -> BranchingConfig:
        if self.global_samples > self.budget:
            raise ValueError(
                f"global_samples={self.global_samples} exceeds budget={self.budget}; "
                "N counts trajectories started from the prompt and cannot exceed M, so lower global_samples"
            )
        if self.dynamic_global_samples_min > self.budget:
            raise ValueError(
                f"dynamic_global_samples_min={self.dynamic_global_samples_min} exceeds budget={self.budget}; "
                "lower it to at most the budget"
            )
        if self.dynamic_global_samples_min != 1 and not self.dynamic_global_samples:
            raise ValueError(
                f"dynamic_global_samples_min={self.dynamic_global_samples_min} only bounds the N of AEPO "
                "pre-monitoring, which is off; set dynamic_global_samples=true or leave the minimum at 1"
            )
        return self

    @property
    def branch_budget(self) -> int:
        """M − N: trajectory slots reserved for branches (the configured N; AEPO pre-monitoring sizes it per group)."""
        return self.budget - self.global_samples

    @property
    def is_grpo(self) -> bool:
        """True when no slot is ever left for branches (N = M, not resized per group): plain GRPO sampling."""
        return self.global_samples == self.budget and not self.dynamic_global_samples


class AdvantageConfig(_Frozen):
    """Outcome advantages and their attribution to tokens (spec §3)."""

    attribution: Literal["soft", "hard"] = "soft"
    """``soft`` (paper default, all published numbers): each trajectory keeps its own Â on all its tokens;
    ``hard``: a token shared by d trajectories gets the mean of their d advantages."""
    normalize_by_std: bool = True
    """Divide (R − mean) by (std + ε), as GRPO. Off gives Dr.GRPO-style mean-centred advantages."""
    std_unbiased: bool = True
    """Use the sample std (n − 1), as the reference's verl (``torch.std``); False: population std."""
    epsilon: float = Field(default=1e-6, gt=0.0)
    """ε in Â = (R − mean) / (std + ε)."""


class AlgoConfig(_Frozen):
    """The algorithm: entropy measurement, branching, advantages and rewards."""

    entropy: EntropyConfig = EntropyConfig()
    """Entropy measurement during rollout (spec §2)."""
    branching: BranchingConfig = BranchingConfig()
    """Entropy-based adaptive rollout: budget, branching rule, limits (spec §2)."""
    advantage: AdvantageConfig = AdvantageConfig()
    """Group advantages and their attribution to tokens (spec §3)."""
    reward: RewardConfig = RewardConfig()
    """The rule-based reward: format penalty, answer metric, tool bonus (spec §5)."""


class ToolCallConfig(_Frozen):
    """How tool calls are read from the model's text (spec §5, §6)."""

    protocol: Literal["tags", "hermes"] = "tags"
    """``tags``: ARPO's ``<python>…</python>`` / ``<search>…</search>`` protocol (the paper's);
    ``hermes``: JSON ``<tool_call>{"name": …, "arguments": …}</tool_call>`` blocks, for function-calling models."""
    tag_arguments: dict[str, str] = Field(default_factory=lambda: {"python": "code", "search": "query"})
    """Tag protocol: tool tag → the argument its text fills. Reference: python → code, search → query."""
    max_argument_chars: int = Field(default=32_000, ge=1)
    """Longest tool-call argument text accepted; a longer one becomes an error the model sees."""
    max_calls_per_turn: int = Field(default=32, ge=1)
    """Hermes protocol: most calls read from one turn."""
    stop_on_call_end: bool = False
    """Hermes protocol: stop generation at ``</tool_call>`` (one call per turn) instead of letting the model
    emit several calls before EOS."""

    def make_parser(self) -> ToolCallParser:
        """The parser this config describes."""
        from arpo_core.toolcalls import make_parser

        tools = self.tag_arguments if self.protocol == "tags" else None
        return make_parser(
            self.protocol,
            tools,
            max_argument_chars=self.max_argument_chars,
            max_calls_per_turn=self.max_calls_per_turn,
            stop_on_call_end=self.stop_on_call_end,
        )


class RolloutConfig(_Frozen):
    """How trajectories are generated (spec §2 limits, §4 sampling) and how much runs at once."""

    max_response_tokens: int = Field(default=4096, ge=1)
    """Token budget of a whole response, tool results included. Paper: 4096 (7B reasoning), 10000 (deep search)."""
    max_segment_tokens: int | None = Field(default=None, ge=1)
    """Cap on one generation call; None: whatever is left of the response budget."""
    temperature: float = Field(default=1.0, ge=0.0)
    """Sampling temperature. Paper: 1.0 in training (0 for validation)."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling. Paper: 1.0."""
    seeded_requests: bool = True
    """Send each request a seed derived from the run seed and the trajectory's lineage: reproducible rollouts."""
    max_inflight_requests: int = Field(default=256, ge=1)
    """Generation requests in flight at once, over all groups and servers."""
    max_inflight_tools: int = Field(default=64, ge=1)
    """Tool calls in flight at once, over all groups."""
    max_groups_in_flight: int = Field(default=32, ge=1)
    """Prompt groups being expanded at once."""
    tool_timeout: float = Field(default=120.0, gt=0)
    """Seconds a tool call may take. Reference: 120 s for Python."""
    group_retries: int = Field(default=2, ge=0)
    """Times a group is restarted on another server after its server failed."""


class TrainConfig(_Frozen):
    """The training loop (spec §4 batch sizes; the asynchronous parts are arpo's)."""

    dataset: str = "builtin:default"
    """Training prompts: a .jsonl/.parquet file or ``builtin:NAME`` (``default``: arpo's bundled tool task)."""
    eval_dataset: str | None = None
    """Held-out questions for the before/after evaluation; ``None`` takes the ``test`` split of a builtin dataset
    (none for a file)."""
    eval_size: int | None = Field(default=None, ge=1)
    """Evaluate on the first N held-out questions (``None``: all)."""
    eval_base: bool = True
    """Evaluate the starting model before any training (label ``base`` with an SFT stage, else ``before``). Off, the
    report starts at ``after SFT`` (with an SFT stage) or has only the final evaluation."""
    eval_every: int = Field(default=0, ge=0)
    """Also evaluate the held-out questions every N RL steps (greedy; label ``step N``); 0: only before and after."""
    steps: int = Field(default=100, ge=0)
    """RL steps (optimiser updates of one batch each)."""
    groups_per_step: int = Field(default=128, ge=1)
    """Prompt groups (each M trajectories) per step. Paper: 128 prompts per batch."""
    max_staleness: int = Field(default=1, ge=0)
    """Drop groups generated by a policy more than this many versions older than the trainer's (0: on-policy)."""
    mode: Literal["async", "sync"] = "async"
    """``async``: rollouts continue while the trainer steps (arpo); ``sync``: generate, then train (the reference)."""
    save_every: int = Field(default=50, ge=0)
    """Checkpoint every N steps (and at the end, and on Ctrl-C); 0: only then."""
    keep_checkpoints: int = Field(default=3, ge=1)
    """Complete checkpoints kept on disk."""


class ArpoConfig(_Frozen):
    """A whole run: the algorithm, tool calls, rollout and the training loop (trainers add their own section)."""

    seed: int = 0
    """Seed for every random choice of the algorithm (branch draws); each group derives its own."""
    algo: AlgoConfig = AlgoConfig()
    """The algorithm's settings, with the paper's defaults."""
    tool_calls: ToolCallConfig = ToolCallConfig()
    """How tool calls are parsed from generated text."""
    rollout: RolloutConfig = RolloutConfig()
    """Generation limits, sampling and concurrency of the rollout engine."""
    train: TrainConfig = TrainConfig()
    """The training loop: data, steps, batch, staleness, checkpoints."""


class ConfigError(ValueError):
    """A config that cannot be used; ``str()`` is one sentence naming the bad value and the fix."""


_Model = TypeVar("_Model", bound=BaseModel)


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass the path of a .toml, .yaml or .json file.")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path} has suffix {suffix!r}; use .toml, .yaml, .yml or .json.")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as err:
        first = str(err).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid {suffix[1:].upper()}: {first}; fix the syntax.") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of sections, not a {type(data).__name__}.")
    return data


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not of the form section.key=value (e.g. algo.branching.beta=0.3).")
    value = yaml.safe_load(raw) if raw.strip() else ""
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r} goes through {part!r}, which is a value, not a section.")
        node = child
    node[parts[-1]] = value


def _describe(err: ValidationError, model: type[BaseModel], source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    where = f" in {source}" if source else ""
    if first["type"] == "extra_forbidden":
        section_model: Any = model
        for part in first["loc"][:-1]:
            field = section_model.model_fields.get(str(part))
            section_model = field.annotation if field is not None else None
            if section_model is None:
                break
        valid = ", ".join(sorted(section_model.model_fields)) if section_model is not None else "?"
        return f"unknown option {loc!r}{where}; valid options here are: {valid}."
    msg = first["msg"].removeprefix("Value error, ")
    if "input" in first and first["type"] != "missing" and loc and not isinstance(first["input"], dict):
        return f"{loc}={first['input']!r}{where} is invalid: {msg}."
    return f"{loc or 'config'}{where} is invalid: {msg}."


def validate_config(model: type[_Model], data: Mapping[str, Any], source: str = "") -> _Model:
    """``model(**data)`` with pydantic's errors turned into one ``ConfigError`` sentence."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_describe(err, model, source)) from None


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    model: type[_Model] = ArpoConfig,  # type: ignore[assignment]
) -> _Model:
    """Load ``model`` from a TOML/YAML/JSON file (or defaults when ``path`` is None) plus ``key=value`` overrides."""
    data: dict[str, Any] = _read_file(Path(path)) if path is not None else {}
    overrides = list(overrides)
    for override in overrides:
        _apply_override(data, override)
    source = str(path) if path is not None else ("--set overrides" if overrides else "")
    return validate_config(model, data, source)
