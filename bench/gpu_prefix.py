"""GPU check of the trainer's prefix-sharing path (``batching.prefix``, ``train.prefix_sharing``,
``train.tree_attention``): packed vs padded logprobs, entropies and gradients in fp32 and bf16, and forward+backward
time and peak memory of both on GRPO/ARPO-shaped micro-batches.

A randomly initialised Llama of SmolLM2-135M's shape (no download), SDPA switched to ``arpo_tree`` as ``load_policy``
does with ``share_prefixes`` on. Both paths go through the project's helpers the way ``BaseTrainer._selected_stats``
does: padded = ``LogitSelector.select(predictor_mask)`` + the model on the (B, T) rows + ``token_stats``; packed =
``choose_packing`` (cost model; forced with ``pack_prefixes`` where it would keep the padded rows, and said so) +
``packed_token_stats``.

    python bench/gpu_prefix.py --device cuda            # the full check (one H100/H200: about a minute)
    python bench/gpu_prefix.py --device cpu --small     # a tiny model and tiny shapes, end to end on a CPU

Writes its report to stdout and, when $OUT is set (the device machine), to $OUT/gpu_prefix.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from arpo_backends.batching.prefix import PrefixPacking, pack_prefixes
from arpo_backends.train.prefix_sharing import (
    attention_break_even,
    attention_implementation,
    choose_packing,
    packed_cost,
    packed_token_stats,
    packing_attention,
    padded_cost,
)
from arpo_backends.train.selective import LogitSelector, predictor_mask, token_stats
from arpo_backends.train.tree_attention import TREE_ATTENTION, enable_tree_attention, tree_runs

MAX_TOKENS = 8192  # TrainerConfig.share_prefixes_max_tokens' default
TEMPERATURE = 1.0

# -- report ---------------------------------------------------------------------------------------------------------

LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)
    out = os.environ.get("OUT")
    if out:  # rewritten after every line, so a run cut short still leaves what it printed
        with open(os.path.join(out, "gpu_prefix.md"), "w") as f:
            f.write("\n".join(LINES) + "\n")


# -- model and data ---------------------------------------------------------------------------------------------


def build_model(small: bool, device: torch.device) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    if small:
        sizes = {
            "hidden_size": 48,
            "num_hidden_layers": 2,
            "num_attention_heads": 3,
            "num_key_value_heads": 1,
            "intermediate_size": 128,
            "vocab_size": 1000,
        }
    else:  # HuggingFaceTB/SmolLM2-135M's shape
        sizes = {
            "hidden_size": 576,
            "num_hidden_layers": 30,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "intermediate_size": 1536,
            "vocab_size": 49152,
        }
    config = LlamaConfig(
        **sizes,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        initializer_range=0.041666666666666664,
        rms_norm_eps=1e-5,
        attn_implementation="sdpa",
        use_cache=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).float().to(device)
    model.config.use_cache = False
    enable_tree_attention(model)
    if attention_implementation(model) != TREE_ATTENTION:
        raise SystemExit(f"enable_tree_attention left {attention_implementation(model)!r}")
    model.train()
    return model


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) int64, 0 on padding
    attention_mask: torch.Tensor  # (B, T) int64
    position_ids: torch.Tensor  # (B, T) int64, 0 on padding (as collate makes them)
    loss_mask: torch.Tensor  # (B, T) bool
    label: str

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            self.loss_mask.to(device),
            self.label,
        )

    @property
    def real_tokens(self) -> int:
        return int(self.attention_mask.sum())


def make_batch(
    rng: np.random.Generator,
    *,
    groups: int,
    per_group: int,
    prompt: int,
    completion: int,
    roots: int,
    vocab: int,
    edge_rows: bool = False,
) -> Batch:
    """``groups`` GRPO groups of ``per_group`` rows each sharing a ``prompt``-token prompt; ARPO-style, each group's
    rows hang from ``roots`` first response segments (``completion``/4 tokens, model-generated: loss tokens) with
    ``per_group/roots`` branches each. Completions (segment + branch) are uniform in [C/2, C]; a 16-token tool-result
    span (loss mask off) sits inside a branch longer than 48 tokens. ``edge_rows`` adds a duplicate row (no new node),
    a row that differs from another only in its last token (a one-token run) and a row that is a strict prefix of
    another (no new node, a loss token predicted by a node of another row's run)."""
    rows: list[np.ndarray] = []
    loss: list[np.ndarray] = []
    seg = max(1, completion // 4)
    for _ in range(groups):
        shared = rng.integers(3, vocab, prompt)
        for _ in range(roots):
            middle = rng.integers(3, vocab, seg)
            for _ in range(per_group // roots):
                total = int(rng.integers(max(seg + 1, completion // 2), completion + 1))
                tail = rng.integers(3, vocab, total - seg)
                row = np.concatenate([shared, middle, tail])
                mask = np.zeros(len(row), dtype=bool)
                mask[prompt:] = True
                if len(tail) > 48:
                    at = prompt + seg + int(rng.integers(8, len(tail) - 24))
                    mask[at : at + 16] = False
                rows.append(row)
                loss.append(mask)
    if edge_rows:
        rows.append(rows[0].copy())
        loss.append(loss[0].copy())
        one_off = rows[1].copy()
        one_off[-1] = (one_off[-1] + 1 - 3) % (vocab - 3) + 3
        rows.append(one_off)
        loss.append(loss[1].copy())
        cut = len(rows[2]) - 5
        rows.append(rows[2][:cut].copy())
        loss.append(loss[2][:cut].copy())
    width = max(len(r) for r in rows)
    b = len(rows)
    ids = torch.zeros(b, width, dtype=torch.int64)
    attention = torch.zeros(b, width, dtype=torch.int64)
    loss_mask = torch.zeros(b, width, dtype=torch.bool)
    for i, (row, mask) in enumerate(zip(rows, loss, strict=True)):
        ids[i, : len(row)] = torch.from_numpy(row)
        attention[i, : len(row)] = 1
        loss_mask[i, : len(row)] = torch.from_numpy(mask)
    positions = torch.arange(width).expand(b, width) * attention
    label = f"{groups}×{per_group} rows, P={prompt}, C≤{completion}, {roots} roots/group"
    return Batch(ids, attention, positions.contiguous(), loss_mask, label)


# -- the two paths, as BaseTrainer._selected_stats runs them ----------------------------------------------------


def padded_stats(model: Any, selector: LogitSelector, batch: Batch, *, entropy: bool = False):
    with selector.select(predictor_mask(batch.loss_mask)):
        logits = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
        ).logits
    return token_stats(logits, batch.input_ids, batch.loss_mask, temperature=TEMPERATURE, entropy=entropy)


def trainer_packing(model: Any, batch: Batch) -> tuple[PrefixPacking, bool]:
    """``BaseTrainer._prefix_packing``: ``choose_packing`` with the model's attention and break-even, moved to the
    batch's device; (packing, chosen) — forced with ``pack_prefixes`` where the cost model keeps the padded rows."""
    packing = choose_packing(
        batch.input_ids,
        batch.attention_mask,
        max_tokens=MAX_TOKENS,
        attention=packing_attention(model, batch.input_ids.device),
        break_even=attention_break_even(model),
    )
    chosen = packing is not None
    if packing is None:
        packing = pack_prefixes(batch.input_ids, batch.attention_mask)
    return packing.to(batch.input_ids.device), chosen


def packed_stats(
    model: Any,
    selector: LogitSelector,
    packing: PrefixPacking,
    batch: Batch,
    *,
    entropy: bool = False,
    attention: str | None = None,
):
    return packed_token_stats(
        model,
        selector,
        packing,
        batch.input_ids,
        batch.loss_mask,
        attention=attention or packing_attention(model, batch.input_ids.device),
        temperature=TEMPERATURE,
        entropy=entropy,
    )


# -- correctness ------------------------------------------------------------------------------------------------


def grads_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}


def run_once(fn: Callable[[], tuple[torch.Tensor, torch.Tensor | None]], model: torch.nn.Module):
    """Forward through ``fn`` (logp, entropy), loss = Σ selected logprobs, backward; (logp, entropy, grads)."""
    model.zero_grad(set_to_none=True)
    logp, h = fn()
    logp.sum().backward()
    g = grads_of(model)
    model.zero_grad(set_to_none=True)
    return logp.detach().float(), None if h is None else h.detach().float(), g


def grad_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, float, str, int]:
    """(‖a − b‖ / ‖b‖ over all parameters, worst per-parameter ‖a − b‖ / ‖b‖, its name, parameters compared)."""
    if a.keys() != b.keys():
        missing = sorted(set(a) ^ set(b))
        raise AssertionError(f"gradients for different parameters: {missing[:5]}")
    num = den = 0.0
    worst, worst_name = 0.0, ""
    for name in b:
        d = float((a[name] - b[name]).double().norm())
        n = float(b[name].double().norm())
        num += d * d
        den += n * n
        rel = d / n if n > 0 else (0.0 if d == 0 else float("inf"))
        if rel > worst:
            worst, worst_name = rel, name
    return (num**0.5) / (den**0.5), worst, worst_name, len(b)


def correctness(model: torch.nn.Module, selector: LogitSelector, batch: Batch, device: torch.device) -> list[str]:
    """Packed vs padded in fp32, bf16 autocast (fp32 weights), bf16 weights, bf16 weights + checkpointing.
    Leaves the model in bf16. Returns a list of failure descriptions (empty: all within tolerance)."""
    failures: list[str] = []
    packing, chosen = trainer_packing(model, batch)
    loss_mask = batch.loss_mask
    say(f"### Correctness: {batch.label}")
    say()
    say(
        f"B×T = {tuple(batch.input_ids.shape)}, real tokens {batch.real_tokens}, trie nodes N = {packing.num_tokens}, "
        f"runs {len(packing.runs)} (one SDPA call each per layer), loss tokens {int(loss_mask[:, 1:].sum())}, "
        f"choose_packing: {'packed' if chosen else 'padded (forced packed here)'}"
    )
    say()

    def both(ctx: Callable[[], Any]):
        with ctx():
            ref = run_once(lambda: padded_stats(model, selector, batch, entropy=True), model)
        with ctx():
            got = run_once(lambda: packed_stats(model, selector, packing, batch, entropy=True), model)
        return ref, got

    fp32_ref, fp32_got = both(nullcontext)
    scale = fp32_ref[0][loss_mask]
    say(
        f"fp32 padded logprobs over loss tokens: mean {float(scale.mean()):.4f}, std {float(scale.std()):.4f}, "
        f"min {float(scale.min()):.4f} (the scale the differences below compare with)"
    )
    say()
    say(
        "| precision | max abs Δ logprob | max abs Δ entropy | rel ‖Δ grad‖ (all params) | worst param rel Δ | "
        "vs fp32 padded: max Δ logprob padded / packed | vs fp32 padded: rel ‖Δ grad‖ padded / packed |"
    )
    say("|---|---|---|---|---|---|---|")

    def row(name: str, ref, got, tol_logp: float, tol_grad: float) -> None:
        dl = float((got[0] - ref[0]).abs().max())
        dh = float((got[1] - ref[1]).abs().max())
        rel, worst, worst_name, count = grad_diff(got[2], ref[2])
        if name == "fp32":
            extra1, extra2 = "—", "—"
        else:
            pl = float((ref[0] - fp32_ref[0]).abs().max())
            kl = float((got[0] - fp32_ref[0]).abs().max())
            pg = grad_diff(ref[2], fp32_ref[2])[0]
            kg = grad_diff(got[2], fp32_ref[2])[0]
            extra1, extra2 = f"{pl:.3g} / {kl:.3g}", f"{pg:.3g} / {kg:.3g}"
            # packed must be no further from fp32 than a few times what padded bf16 itself is
            if kl > max(3 * pl, tol_logp) or kg > max(3 * pg, tol_grad):
                failures.append(
                    f"{name}: packed is further from fp32 than padded bf16 ({kl:.3g} vs {pl:.3g}, {kg:.3g} vs {pg:.3g})"
                )
        say(f"| {name} | {dl:.3g} | {dh:.3g} | {rel:.3g} | {worst:.3g} ({worst_name}) | {extra1} | {extra2} |")
        if name == "fp32" and (dl > tol_logp or dh > tol_logp or rel > tol_grad):
            failures.append(
                f"fp32: max Δ logprob {dl:.3g}, Δ entropy {dh:.3g}, rel Δ grad {rel:.3g} "
                f"(tolerances {tol_logp}, {tol_grad}); {count} params"
            )
        # no padded-only leakage: logprobs off the loss mask must be exactly 0 in both
        off = float(got[0][~loss_mask].abs().max()) if bool((~loss_mask).any()) else 0.0
        if off != 0.0:
            failures.append(f"{name}: packed logprob nonzero off the loss mask ({off})")

    row("fp32", fp32_ref, fp32_got, 1e-4, 1e-4)
    # a planted bug, to show what one looks like next to the rows above: the nodes of every run after the first
    # (the branches, hanging from a context) get position + 1 (a shift of all positions would change nothing: RoPE)
    shifted = packing.position_ids.clone()
    shifted[:, packing.runs[1].start :] += 1
    control = PrefixPacking(
        packing.token_ids, shifted, packing.gather_index, packing.parents, packing.lengths, packing.runs
    )

    def control_delta(ref) -> float:
        with torch.no_grad():
            bad, _ = packed_stats(model, selector, control, batch)
        return float((bad.float() - ref[0]).abs().max())

    controls = [f"fp32 {control_delta(fp32_ref):.3g}"]
    a_ref, a_got = both(lambda: torch.autocast(device.type, dtype=torch.bfloat16))
    row("bf16 autocast (fp32 weights)", a_ref, a_got, 0.1, 0.05)
    model.to(torch.bfloat16)
    b_ref, b_got = both(nullcontext)
    row("bf16 weights", b_ref, b_got, 0.1, 0.05)
    controls.append(f"bf16 weights {control_delta(b_ref):.3g}")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    c_ref, c_got = both(nullcontext)
    row("bf16 weights + gradient checkpointing", c_ref, c_got, 0.1, 0.05)
    model.gradient_checkpointing_disable()
    say()
    say(
        "Negative control — packed with position_id + 1 on the branch runs (a planted bug), max abs Δ logprob vs "
        "padded: " + ", ".join(controls)
    )
    say()
    return failures


# -- speed ------------------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - t0) * 1e3


def peak_of(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(peak allocated GiB during fn, peak above what was allocated before it GiB); NaN on CPU."""
    if device.type != "cuda":
        return float("nan"), float("nan")
    sync(device)
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    peak = torch.cuda.max_memory_allocated(device)
    return peak / 2**30, (peak - before) / 2**30


def speed(
    model: torch.nn.Module,
    selector: LogitSelector,
    batches: list[Batch],
    device: torch.device,
    warmup: int,
    repeats: int,
) -> list[str]:
    """The table; returns notes where the cost model's choice and the measured ratio disagree."""
    notes: list[str] = []
    say("### Speed: forward+backward, bf16 weights, loss = Σ selected logprobs")
    say()
    say(
        f"Median of {repeats} (after {warmup} warm-ups), padded and packed interleaved, torch.cuda.synchronize "
        "around each. `packed` includes the per-micro-batch CPU work (`choose_packing`: trie + cost model, "
        "`tree_runs`). `dense` = the packed buffer with a dense (N, N) tree mask through plain SDPA (the "
        "`sdpa`/`eager` packed path), for comparison. Peak = torch.cuda.max_memory_allocated during one "
        "fwd+bwd (Δ: above the weights already allocated). Cost-model ratio = padded_cost / packed_cost "
        "(what `choose_packing` predicts; > 1 packs). `packed` is the trainer's path (`packing_attention`: the dense "
        "tree mask through SDPA on a GPU, run by run on a CPU), `one call per run` the run-by-run `arpo_tree` way."
    )
    say()
    say(
        "| micro-batch | B×T | real tok | trie N | runs | padded ms | packed ms | ratio padded÷packed | "
        "one call per run ms | dense ms | fwd-only padded / packed ms "
        "| pack CPU ms | peak GiB padded / packed (Δ) | cost-model ratio | "
        "chosen |"
    )
    say("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for batch in batches:
        note = speed_row(model, selector, batch, device, warmup, repeats)
        if note:
            notes.append(note)
    say()
    return notes


def speed_row(
    model: torch.nn.Module,
    selector: LogitSelector,
    batch: Batch,
    device: torch.device,
    warmup: int,
    repeats: int,
) -> str | None:
    """One row of the speed table; a note when the cost model's choice and the measured ratio disagree."""
    break_even = attention_break_even(model)

    def padded() -> None:
        model.zero_grad(set_to_none=True)
        logp, _ = padded_stats(model, selector, batch)
        logp.sum().backward()

    def packed() -> None:
        model.zero_grad(set_to_none=True)
        packing, _ = trainer_packing(model, batch)
        logp, _ = packed_stats(model, selector, packing, batch)
        logp.sum().backward()

    fixed, chosen = trainer_packing(model, batch)

    def dense() -> None:
        model.zero_grad(set_to_none=True)
        logp, _ = packed_stats(model, selector, fixed, batch, attention="sdpa")
        logp.sum().backward()

    def per_run() -> None:  # arpo_tree: one SDPA call per run (the CPU's way)
        model.zero_grad(set_to_none=True)
        packing, _ = trainer_packing(model, batch)
        logp, _ = packed_stats(model, selector, packing, batch, attention=TREE_ATTENTION)
        logp.sum().backward()

    def padded_fwd() -> None:
        with torch.no_grad():
            padded_stats(model, selector, batch)

    def packed_fwd() -> None:
        with torch.no_grad():
            packing, _ = trainer_packing(model, batch)
            packed_stats(model, selector, packing, batch)

    def pack_cpu() -> None:
        packing, _ = trainer_packing(model, batch)
        tree_runs(packing, device)

    use_dense = fixed.num_tokens <= MAX_TOKENS
    fns = {
        "padded": padded,
        "packed": packed,
        "per_run": per_run,
        "padded_fwd": padded_fwd,
        "packed_fwd": packed_fwd,
        "pack": pack_cpu,
    }
    if use_dense:
        fns["dense"] = dense
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(timed(fn, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    peak_pad = peak_of(padded, device)
    peak_pack = peak_of(packed, device)
    model.zero_grad(set_to_none=True)
    lengths = fixed.lengths
    width = int(batch.input_ids.shape[1])
    predicted = padded_cost(lengths, width, break_even) / packed_cost(
        fixed, packing_attention(model, device) or "", break_even
    )
    ratio = med["padded"] / med["packed"]
    dense_ms = f"{med['dense']:.1f}" if use_dense else "— (N > cap)"
    say(
        f"| {batch.label} | {tuple(batch.input_ids.shape)} | {batch.real_tokens} | {fixed.num_tokens} | "
        f"{len(fixed.runs)} | {med['padded']:.1f} | {med['packed']:.1f} | **{ratio:.2f}** | {med['per_run']:.1f} | "
        f"{dense_ms} | "
        f"{med['padded_fwd']:.1f} / {med['packed_fwd']:.1f} | {med['pack']:.1f} | "
        f"{peak_pad[0]:.2f} ({peak_pad[1]:.2f}) / {peak_pack[0]:.2f} ({peak_pack[1]:.2f}) | "
        f"{predicted:.2f} | {'packed' if chosen else 'padded'} |"
    )
    if chosen != (ratio > 1.0):
        return (
            f"{batch.label}: choose_packing picks {'packed' if chosen else 'padded'} (predicted "
            f"{predicted:.2f}×) but measured padded÷packed = {ratio:.2f}×"
        )
    return None


# -- profile ----------------------------------------------------------------------------------------------------


def profile_paths(model: torch.nn.Module, selector: LogitSelector, batch: Batch, device: torch.device) -> None:
    """One fwd+bwd of each path under torch.profiler: wall vs the GPU's summed kernel time (is the path bound by
    the GPU or by launching kernels?), kernel launches, the attention kernels used, and the packed path's top ops."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    fixed, _ = trainer_packing(model, batch)

    def padded() -> None:
        model.zero_grad(set_to_none=True)
        padded_stats(model, selector, batch)[0].sum().backward()

    def packed() -> None:
        model.zero_grad(set_to_none=True)
        packing, _ = trainer_packing(model, batch)
        packed_stats(model, selector, packing, batch)[0].sum().backward()

    def dense() -> None:
        model.zero_grad(set_to_none=True)
        packed_stats(model, selector, fixed, batch, attention="sdpa")[0].sum().backward()

    say(
        f"### Profile: one fwd+bwd, bf16 weights, {batch.label}, B×T {tuple(batch.input_ids.shape)}, "
        f"N {fixed.num_tokens}, runs {len(fixed.runs)}"
    )
    say()
    say(
        "| path | wall ms (under profiler) | GPU kernel time ms (Σ self) | GPU busy % | kernel launches | "
        "attention kernels (calls) |"
    )
    say("|---|---|---|---|---|---|")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    tables: dict[str, str] = {}
    for name, fn in {"padded": padded, "packed (arpo_tree)": packed, "dense tree mask": dense}.items():
        for _ in range(2):
            fn()
        sync(device)
        with profile(activities=activities) as prof:
            wall = timed(fn, device)
        averages = prof.key_averages()
        # the kernels themselves (device events; the aten ops that launched them repeat their time on the CPU side)
        gpu_us = sum(float(e.self_device_time_total) for e in averages if e.device_type == DeviceType.CUDA)
        launches = sum(e.count for e in averages if "LaunchKernel" in e.key or "cudaLaunch" in e.key)
        words = ("fmha", "flash", "attention", "cudnn", "efficient", "sdpa", "softmax")
        attn = sorted(
            (e.key[:60], e.count)
            for e in averages
            if any(w in e.key.lower() for w in words) and float(getattr(e, "self_device_time_total", 0) or 0) > 0
        )
        attn_s = "; ".join(f"`{k}` ({c})" for k, c in attn[:6]) or "—"
        busy = 100 * gpu_us / 1e3 / wall if wall > 0 else float("nan")
        say(f"| {name} | {wall:.1f} | {gpu_us / 1e3:.1f} | {busy:.0f} | {launches} | {attn_s} |")
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        try:
            tables[name] = averages.table(sort_by=sort, row_limit=14, max_name_column_width=48)
        except Exception as exc:
            tables[name] = f"(no table: {exc})"
    model.zero_grad(set_to_none=True)
    say()
    for name in ("packed (arpo_tree)", "padded"):
        say(f"Top ops, {name}:")
        say()
        say("```")
        for line in tables[name].splitlines():
            say(line)
        say("```")
        say()


# -- main -------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--small", action="store_true", help="tiny model and shapes (a CPU smoke run)")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="also profile one fwd+bwd of each path")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # gradient_checkpointing_enable's rename notice
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no GPU")
    warmup = args.warmup if args.warmup is not None else (1 if args.small else 3)
    repeats = args.repeats if args.repeats is not None else (3 if args.small else 10)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 comparisons in true fp32
        torch.backends.cudnn.allow_tf32 = False

    import transformers

    started = time.perf_counter()
    say("## Prefix sharing on the GPU: packed (trie, the dense tree mask through SDPA) vs padded")
    say()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    say(
        f"device {name}; torch {torch.__version__}; transformers {transformers.__version__}; "
        f"python {platform.python_version()}; {'small model' if args.small else 'SmolLM2-135M shape, random init'}"
    )
    say()
    model = build_model(args.small, device)
    vocab = model.config.vocab_size
    selector = LogitSelector(model)
    say(
        f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
        f"{model.config.num_hidden_layers} layers, attention {attention_implementation(model)!r}, "
        f"L* (attention_break_even) = {attention_break_even(model):.0f}"
    )
    say()
    rng = np.random.default_rng(0)
    if args.small:
        check = make_batch(rng, groups=1, per_group=8, prompt=24, completion=32, roots=2, vocab=vocab, edge_rows=True)
        shapes = [  # (groups, rows per group, prompt, completion ≤, roots per group)
            (1, 8, 32, 32, 2),
            (2, 4, 8, 48, 2),
        ]
    else:
        check = make_batch(rng, groups=1, per_group=8, prompt=256, completion=256, roots=2, vocab=vocab, edge_rows=True)
        shapes = [
            (1, 8, 512, 512, 2),
            (1, 16, 1024, 256, 4),
            (1, 8, 128, 1024, 2),
            (2, 8, 512, 512, 2),
            (1, 8, 2048, 512, 2),
        ]
    failures = correctness(model, selector, check.to(device), device)
    batches = [
        make_batch(rng, groups=g, per_group=m, prompt=p, completion=c, roots=r, vocab=vocab).to(device)
        for g, m, p, c, r in shapes
    ]
    notes = speed(model, selector, batches, device, warmup, repeats)
    if args.profile:
        try:
            profile_paths(model, selector, batches[0], device)
        except Exception as exc:  # the profile is extra evidence: keep the verdict
            say(f"(profile failed: {type(exc).__name__}: {exc})")
            say()
    say("### Verdict")
    say()
    for n in notes:
        say(f"- COST MODEL: {n}")
    if failures:
        for f in failures:
            say(f"- FAIL: {f}")
    else:
        say(
            "- all checks within tolerance (fp32: 1e-4 abs logprob, 1e-4 rel grad; bf16: packed no further from "
            "fp32 than 3× padded bf16)"
        )
    say(f"- script wall time {time.perf_counter() - started:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
