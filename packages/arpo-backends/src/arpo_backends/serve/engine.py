"""The batched generation loop: synchronous, one ``step`` at a time, driven by the scheduler in a worker thread.

Mirrors what a vLLM engine step does, in the small: ``step(new)`` runs one decoding step for every active
sequence (one batched forward over the left-padded batch cache, preallocated and written in place, see ``kv``),
then prefills the newly admitted sequences (one forward per distinct prompt, the ``n`` choices of a prompt share
it; several prompts per forward with ``prefill_tokens``, see ``packed``) and samples their first token, then
removes the sequences that finished. Each sequence stops on its own (EOS, ``stop_token_ids``, a stop string,
``max_tokens``, the context length) and samples with its own parameters and ``torch.Generator``. Stop strings are
looked for in the text of the last few tokens, and confirmed on the whole text only on a hit.

Results are bit for bit those of the straightforward loop (each prompt prefilled alone into a ``DynamicCache``,
caches concatenated every step): same kernels on the same shapes. Two things change the bits of a float32 CPU
forward and so, rarely, a sampled token: the torch thread count (BLAS splits its products by threads) and the
number of rows of a product (< 16 rows take other BLAS kernels: a decoding step's batch size matters, as in any
batching server). Packed prefill (``prefill_tokens`` > 0) is bit-identical with one thread only.

Stop semantics are vLLM's: ``token_ids`` always hold every sampled token (the stop string's tokens and the EOS or
stop token included) and ``logprobs`` align with them; only ``text`` is cut — at the start of a matched stop string,
or after it with ``include_stop_str_in_output``; the EOS / stop token's own text is left out unless
``include_stop_str_in_output``. ``stop_reason`` is the matched string or token id, or None (EOS, length).

With ``prefix_cache_tokens`` > 0 a prompt that starts with tokens the engine has already run (a continuation after
a tool result, a branch, a repeated prompt) prefills only the rest, from the cached keys and values (see
``prefix``): far less prefill, at the price of the bit-exactness above (other shapes, other last bits).

Deviations: no chunked prefill, no preemption (admission stops at ``max_batch``).
"""

from __future__ import annotations

import copy
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import DynamicCache

from arpo_backends.serve.kv import BatchCache, check_supported
from arpo_backends.serve.packed import packed_prefill, supports_packed
from arpo_backends.serve.prefix import PrefixCache, PrefixHit
from arpo_backends.serve.sampling import RowParams, sample_step

__all__ = ["Engine", "GenParams", "Sequence", "choice_seed"]

_SEED_STRIDE = 0x9E3779B97F4A7C15  # spreads the n choices of one seeded request over unrelated streams
_STOP_MARGIN = 16  # characters decoded before a stop string's possible start (see ``Engine._tail_may_stop``)
_PACK_MIN = 16  # shorter prompts are prefilled alone: a product of < 16 rows takes other BLAS kernels (other bits)


def choice_seed(seed: int | None, index: int) -> int:
    """The generator seed of choice ``index`` of a request: ``seed`` itself for the first choice."""
    if seed is None:
        return random.SystemRandom().getrandbits(63)
    return (seed + index * _SEED_STRIDE) % (1 << 63)


@dataclass(frozen=True, slots=True)
class GenParams:
    """One choice's sampling parameters, named as vLLM's ``SamplingParams``."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    min_tokens: int = 0
    logprobs: int | None = None  # top entries to report per token; None: no logprobs at all
    skip_special_tokens: bool = True


@dataclass(eq=False, slots=True)
class Sequence:
    """One choice being generated, and, once finished, its result."""

    prompt_ids: list[int]
    params: GenParams
    choice_index: int = 0
    output_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    text: str = ""
    cancelled: bool = False
    error: str | None = None
    weight_version: int = 0
    generator: torch.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(choice_seed(self.params.seed, self.choice_index))

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


class Engine:
    """A causal LM, its tokenizer, and the batch of sequences being decoded."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_model_len: int,
        max_batch: int = 32,
        prefill_tokens: int = 0,
        prefix_cache_tokens: int = 0,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer  # for the event loop (encoding prompts, building responses)
        # The engine thread decodes with its own copy: a Rust tokenizer used from two threads at once can fail with
        # "Already borrowed" when one of them changes its padding/truncation state.
        self._detokenizer = copy.deepcopy(tokenizer)
        self.max_model_len = max_model_len
        self.max_batch = max_batch
        self.vocab_size = int(model.config.vocab_size)
        self.eos_ids = _eos_ids(model, tokenizer)
        self.weight_version = 0
        # transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns until 5.40)
        self._cache_kwarg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.prefill_tokens = prefill_tokens
        self._packed = prefill_tokens > 0 and supports_packed(model)  # several prompts per prefill forward
        self.prefix = PrefixCache(prefix_cache_tokens) if prefix_cache_tokens > 0 else None
        # torch threads for each step, set in the step's own thread (torch's setting is per thread); None: leave it
        self.threads: Callable[[], int] | None = None
        self.active: list[Sequence] = []
        self.batch = BatchCache()
        self.decode_steps = 0  # batched decoding forwards so far
        self.decoded_tokens = 0  # tokens they produced (decoded_tokens / decode_steps = mean batch size)

    @property
    def capacity(self) -> int:
        return max(self.max_batch - len(self.active), 0)

    def reset(self) -> None:
        """Forget every active sequence (after an error)."""
        self.active = []
        self.batch.clear()

    def weights_changed(self, version: int) -> None:
        """New weights are in the model (between steps, with no active sequence): cached prefixes are stale."""
        self.weight_version = version
        self.reset_prefix_cache()

    def reset_prefix_cache(self) -> bool:
        """Forget every cached prefix; whether there is a prefix cache at all."""
        if self.prefix is None:
            return False
        self.prefix.clear()
        return True

    @torch.inference_mode()
    def step(self, new: list[Sequence]) -> list[Sequence]:
        """Decode one token for each active sequence, then admit ``new``; return the sequences that finished."""
        if self.threads is not None:
            threads = self.threads()
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        done: list[Sequence] = [s for s in self.active if s.cancelled]
        if done:
            self._remove([i for i, s in enumerate(self.active) if s.cancelled])
        if self.active:
            self._sample(list(self.active), self._decode())
        fresh = [s for s in new if not s.cancelled]
        if fresh:
            self._prefill(fresh)
        finished = [s for s in self.active if s.finished]
        if finished and self.prefix is not None:
            self._cache_finished()
        if finished:
            self._remove([i for i, s in enumerate(self.active) if s.finished])
        return done + finished

    # ------------------------------------------------------------------ internals
    def _remove(self, rows: list[int]) -> None:
        order = self.batch.remove(rows)
        self.active = [self.active[i] for i in order]

    def _decode(self) -> torch.Tensor:
        """One batched forward over the active sequences' last tokens; their next-token logits (B, V)."""
        # (B, T + 1), True on real tokens. 2D, as transformers expects: it drops an all-True mask, and SDPA then
        # takes another kernel (GQA without a mask) whose results differ in the last bits from the masked one.
        mask = self.batch.decode_mask()
        input_ids = torch.tensor([[s.output_ids[-1]] for s in self.active])  # (B, 1)
        positions = torch.tensor([[len(s.prompt_ids) + len(s.output_ids) - 1] for s in self.active])  # (B, 1)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_kwarg: self.batch.cache},
        )
        self.batch.advance()
        self.decode_steps += 1
        self.decoded_tokens += len(self.active)
        return out.logits[:, -1, :]

    def _prefill(self, new: list[Sequence]) -> None:
        """Prefill the distinct prompts of ``new``, add their sequences to the batch and sample their first token.

        The ``n`` choices of a prompt share its prefill and are sampled together (a call per prompt, as each was
        sampled when prefilled alone: top-p's candidates depend on the rows of a call). Each prompt gets its own
        forward, unless ``prefill_tokens`` allows packing several into one (see ``packed``).
        """
        groups: dict[tuple[int, ...], list[Sequence]] = {}
        for seq in new:
            groups.setdefault(tuple(seq.prompt_ids), []).append(seq)
        prompts = list(groups.items())
        hits: dict[tuple[int, ...], PrefixHit] = {}
        if self.prefix is not None:
            hits = {prompt: hit for prompt, _ in prompts if (hit := self.prefix.lookup(prompt)) is not None}
        cold = [p for p in prompts if p[0] not in hits]  # prefilled from scratch, packed if allowed
        if self._packed:
            chunks = _chunks([p for p in cold if len(p[0]) >= _PACK_MIN], self.prefill_tokens)
            chunks += [[p] for p in cold if len(p[0]) < _PACK_MIN]
        else:
            chunks = [[p] for p in cold]
        chunks += [[p] for p in prompts if p[0] in hits]  # one forward each, past the cached prefix
        for chunk in chunks:
            hit = hits.get(chunk[0][0])
            if hit is not None:
                cache, logits = self._forward_from_prefix(list(chunk[0][0]), hit)
            else:
                cache, logits = self._forward_prompts([list(prompt) for prompt, _ in chunk])
            check_supported(cache)
            self.batch.reserve(sum(len(seqs) for _, seqs in chunk), max(len(p) for p, _ in chunk), cache)
            offset = 0
            for i, (prompt, seqs) in enumerate(chunk):
                self.batch.add_rows(cache, offset, len(prompt), len(seqs))
                if self.prefix is not None:
                    self.prefix.store(prompt, _cache_columns(cache, offset, len(prompt)))
                offset += len(prompt)
                for seq in seqs:
                    seq.weight_version = self.weight_version
                self.active.extend(seqs)
                self._sample(seqs, logits[i : i + 1].expand(len(seqs), -1))

    def _forward_prompts(self, prompts: list[list[int]]) -> tuple[DynamicCache, torch.Tensor]:
        """The prefill forward of ``prompts`` (packed if several): the cache and the next-token logits (P, V)."""
        if len(prompts) > 1:
            return packed_prefill(self.model, prompts, self._cache_kwarg)
        (prompt,) = prompts
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=torch.tensor([prompt]), use_cache=True, logits_to_keep=1, **{self._cache_kwarg: cache}
        )
        return cache, out.logits[:, -1, :]

    def _forward_from_prefix(self, prompt: list[int], hit: PrefixHit) -> tuple[DynamicCache, torch.Tensor]:
        """Prefill ``prompt`` past its first ``hit.tokens`` tokens, whose keys and values come from the cache."""
        cache = DynamicCache(config=self.model.config)
        for i in range(hit.kv.shape[0]):
            cache.update(hit.kv[i, 0].unsqueeze(0), hit.kv[i, 1].unsqueeze(0), i)  # copies (``torch.cat``)
        start = hit.tokens
        out = self.model(
            input_ids=torch.tensor([prompt[start:]]),
            position_ids=torch.arange(start, len(prompt)).unsqueeze(0),
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kwarg: cache},
        )
        return cache, out.logits[:, -1, :]

    def _cache_finished(self) -> None:
        """Keep the KV of each finished sequence: its prompt and the output tokens it fed back (all but the last)."""
        assert self.prefix is not None
        for row, seq in enumerate(self.active):
            if seq.finished and not seq.cancelled and seq.error is None:
                fed = seq.prompt_ids + seq.output_ids[:-1]
                self.prefix.store(fed, self.batch.row_kv(row, len(fed)))

    def _sample(self, seqs: list[Sequence], logits: torch.Tensor) -> None:
        rows = [self._row_params(s) for s in seqs]
        result = sample_step(logits, rows)
        for i, seq in enumerate(seqs):
            seq.output_ids.append(result.token_ids[i])
            if seq.params.logprobs is not None:
                seq.logprobs.append(result.logprobs[i])
                seq.top.append(result.top[i])
            self._check_finished(seq)

    def _row_params(self, seq: Sequence) -> RowParams:
        p = seq.params
        banned: tuple[int, ...] = ()
        if len(seq.output_ids) < p.min_tokens:
            banned = tuple(p.stop_token_ids) + (() if p.ignore_eos else tuple(self.eos_ids))
        return RowParams(
            p.temperature, p.top_p, p.top_k, p.logprobs or 0, seq.generator, banned, logprob=p.logprobs is not None
        )

    def _decode_text(self, seq: Sequence, ids: list[int]) -> str:
        return str(self._detokenizer.decode(ids, skip_special_tokens=seq.params.skip_special_tokens))

    def _check_finished(self, seq: Sequence) -> None:
        p, ids = seq.params, seq.output_ids
        token = ids[-1]
        if not p.ignore_eos and token in self.eos_ids:
            self._finish(seq, "stop", None, token_stop=True)
        elif token in p.stop_token_ids:
            self._finish(seq, "stop", token, token_stop=True)
        elif p.stop and len(ids) > p.min_tokens and self._match_stop(seq):
            return
        elif len(ids) >= p.max_tokens or len(seq.prompt_ids) + len(ids) >= self.max_model_len:
            self._finish(seq, "length", None)

    def _match_stop(self, seq: Sequence) -> bool:
        if not self._tail_may_stop(seq):
            return False
        text = self._decode_text(seq, seq.output_ids)
        best: tuple[int, str] | None = None
        for stop in seq.params.stop:
            at = text.find(stop)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, stop)
        if best is None:
            return False
        at, stop = best
        seq.finish_reason, seq.stop_reason = "stop", stop
        seq.text = text[: at + len(stop)] if seq.params.include_stop_str_in_output else text[:at]
        return True

    def _tail_may_stop(self, seq: Sequence) -> bool:
        """Whether a stop string may have just been completed, from the text of the last few tokens only.

        A stop string not in the text before this token can only appear at the end of the text, so the last
        ``longest + _STOP_MARGIN`` characters hold it; the tail is decoded alone (re-decoding the whole output every
        step is quadratic in its length). The margin absorbs what decoding a tail alone may change at its start (a
        character cut between tokens, a leading space). A hit is confirmed on the whole text by the caller.
        """
        ids = seq.output_ids
        if len(ids) <= seq.params.min_tokens + 1:  # the first check: stops were not looked for before min_tokens
            return True
        need = max(len(stop) for stop in seq.params.stop) + _STOP_MARGIN
        window = need
        while True:
            tail = ids[-window:]
            text = self._decode_text(seq, tail)
            if len(text) >= need or len(tail) == len(ids):
                return any(stop in text for stop in seq.params.stop)
            window *= 2

    def _finish(self, seq: Sequence, reason: str, stop_reason: int | None, *, token_stop: bool = False) -> None:
        seq.finish_reason, seq.stop_reason = reason, stop_reason
        ids = seq.output_ids
        if token_stop and not seq.params.include_stop_str_in_output:
            ids = ids[:-1]
        seq.text = self._decode_text(seq, ids)


def _chunks(
    prompts: list[tuple[tuple[int, ...], list[Sequence]]], budget: int
) -> list[list[tuple[tuple[int, ...], list[Sequence]]]]:
    """Consecutive prompts in batches of at most ``budget`` tokens (at least one prompt each)."""
    chunks: list[list[tuple[tuple[int, ...], list[Sequence]]]] = []
    current: list[tuple[tuple[int, ...], list[Sequence]]] = []
    tokens = 0
    for item in prompts:
        if current and tokens + len(item[0]) > budget:
            chunks.append(current)
            current, tokens = [], 0
        current.append(item)
        tokens += len(item[0])
    if current:
        chunks.append(current)
    return chunks


def _cache_columns(cache: DynamicCache, offset: int, length: int) -> torch.Tensor:
    """Row 0's keys and values in columns ``[offset, offset + length)``: (layers, 2, kv_heads, length, head_dim)."""
    end = offset + length
    return torch.stack(
        [torch.stack((layer.keys[0, :, offset:end], layer.values[0, :, offset:end])) for layer in cache.layers]
    )


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return frozenset(ids)
