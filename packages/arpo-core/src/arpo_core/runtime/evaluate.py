"""Evaluating a model on a dataset through the chat agent loop: k samples per question, concurrently.

Per question: n = k episodes, c of them correct (``evaluation.is_correct``); per run: pass@1 and pass@k
(unbiased), mean tool calls and tokens per episode, format errors (tag protocol), the training reward when a
``RewardFunction`` is given (``mean_reward``: the score the run optimises, so before/after evaluations compare in
its units), with every episode kept in the report so a number can always be traced back to the transcripts behind it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio

from arpo_core.algo.rewards import RewardFunction, check_format
from arpo_core.data import Sample
from arpo_core.evaluation import is_correct, pass_at_k
from arpo_core.report.intervals import mean_interval, wilson_interval
from arpo_core.runtime.chat import ChatClient, EpisodeProtocol, run_episode
from arpo_core.runtime.tools import ToolClient

__all__ = ["EvalReport", "QuestionResult", "evaluate"]


@dataclass
class QuestionResult:
    id: str
    question: str
    ground_truth: list[str]
    correct: list[bool] = field(default_factory=list)
    f1: list[float] = field(default_factory=list)
    tool_calls: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    format_ok: list[bool] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)


@dataclass
class EvalReport:
    model: str
    dataset: str
    k: int
    questions: list[QuestionResult]
    seconds: float
    protocol: str

    def summary(self) -> dict[str, float]:
        qs = [q for q in self.questions if q.correct]
        episodes = [i for q in qs for i in range(len(q.correct))]
        n_ep = max(len(episodes), 1)
        return (
            {
                "questions": len(self.questions),
                "episodes": len(episodes),
                "pass@1": sum(pass_at_k(len(q.correct), sum(q.correct), 1) for q in qs) / max(len(qs), 1),
                f"pass@{self.k}": sum(
                    pass_at_k(len(q.correct), sum(q.correct), min(self.k, len(q.correct))) for q in qs
                )
                / max(len(qs), 1),
                "mean_f1": sum(sum(q.f1) for q in qs) / n_ep,
                "tool_calls_per_episode": sum(sum(q.tool_calls) for q in qs) / n_ep,
                "tokens_per_episode": sum(sum(q.tokens) for q in qs) / n_ep,
                "format_errors": float(sum(q.format_ok.count(False) for q in qs)),
                "failed_episodes": float(sum(len(q.errors) for q in self.questions)),
            }
            | self._reward_summary(qs)
            | self._intervals(qs)
        )

    @staticmethod
    def _reward_summary(qs: Sequence[QuestionResult]) -> dict[str, float]:
        rewards = [r for q in qs for r in q.reward]
        return {"mean_reward": sum(rewards) / len(rewards)} if rewards else {}

    @staticmethod
    def _intervals(qs: Sequence[QuestionResult]) -> dict[str, float]:
        """95% intervals over questions (``arpo_core.report.intervals``): Wilson for pass@1, t for the means."""
        if not qs:
            return {}
        passed = sum(sum(q.correct) / len(q.correct) for q in qs)
        low, high = wilson_interval(passed, len(qs))
        out = {"pass@1_low": low, "pass@1_high": high}
        if len(qs) >= 2:
            per_question = {
                "tool_calls_per_episode": [sum(q.tool_calls) / len(q.tool_calls) for q in qs],
                "mean_reward": [sum(q.reward) / len(q.reward) for q in qs if q.reward],
            }
            for key, values in per_question.items():
                if len(values) == len(qs):
                    out[f"{key}_low"], out[f"{key}_high"] = mean_interval(values)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "dataset": self.dataset, "k": self.k, "protocol": self.protocol,
            "seconds": self.seconds, "summary": self.summary(), "questions": [asdict(q) for q in self.questions],
        }  # fmt: skip


async def evaluate(
    client: ChatClient,
    samples: Sequence[Sample],
    tools: ToolClient | None,
    *,
    model: str,
    dataset: str,
    k: int = 1,
    protocol: EpisodeProtocol = "tags",
    concurrency: int = 8,
    call_limit: int = 3,
    max_tokens: int = 2048,
    temperature: float = 0.0,
    on_episode: Callable[[], None] | None = None,
    reward: RewardFunction | None = None,
) -> EvalReport:
    """Run k episodes of every sample, at most ``concurrency`` at once; a failed episode is recorded, not fatal.
    With ``reward``, each episode is also scored as training scores it (on the assistant's text with its tool
    results, against the ground truth)."""
    if k < 1:
        raise ValueError(f"k={k} must be ≥ 1.")
    results = [QuestionResult(s.id, s.question, list(s.ground_truth)) for s in samples]
    limiter = anyio.CapacityLimiter(concurrency)
    start = time.perf_counter()

    async def one(i: int) -> None:
        sample, result = samples[i], results[i]
        async with limiter:
            try:
                ep = await run_episode(
                    client, sample.messages, tools, protocol=protocol, call_limit=call_limit,
                    max_tokens=max_tokens, temperature=temperature,
                )  # fmt: skip
            except Exception as err:  # one broken episode must not lose the whole evaluation
                result.errors.append(f"{type(err).__name__}: {err}")
                return
            finally:
                if on_episode is not None:
                    on_episode()
        ok, f1 = is_correct(ep.final, sample.ground_truth)
        result.correct.append(ok)
        result.f1.append(f1)
        result.tool_calls.append(ep.tool_calls)
        result.tokens.append(ep.prompt_tokens + ep.completion_tokens)
        result.format_ok.append(check_format(ep.transcript).ok if protocol != "functions" else True)
        result.transcripts.append(ep.transcript)
        if reward is not None:
            result.reward.append(reward(ep.transcript, list(sample.ground_truth)).score)

    async with anyio.create_task_group() as tg:
        for i in range(len(samples)):
            for _ in range(k):
                tg.start_soon(one, i)
    return EvalReport(model, dataset, k, results, time.perf_counter() - start, protocol)
