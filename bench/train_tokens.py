"""Training tokens/s of arpo's trainers against TRL's ``GRPOTrainer``, same model, batch and lengths, one run.

    .venv/bin/python bench/train_tokens.py                  # SmolLM2-135M-Instruct, 8 × (128 + 128) tokens
    .venv/bin/python bench/train_tokens.py --quick          # tiny model: a smoke test (its timings mean nothing)
    .venv/bin/python bench/train_tokens.py --backends fsdp,trl --batch 16 --steps 5 --sequential

Issue requirement (b): training tokens/s of each backend vs TRL's ``GRPOTrainer`` on the same model, batch and
sequence lengths — goal ≥ 1.5×. Only the *training* part of a GRPO step is measured (forward, loss, backward,
clip, AdamW step on already generated completions); generation is not.

The batch: ``--batch`` sequences in groups of ``--group-size`` (GRPO's ``num_generations``), each a prompt of
``--prompt-len`` random tokens (shared within a group) and a completion of ``--completion-len`` random tokens, a
GRPO advantage per sequence (group-normalised random rewards), no padding. Per step both sides see exactly this
batch and do:

* **arpo** (``fsdp``: FSDP2, ``deepspeed``: ZeRO-2 with torch's AdamW): ``trainer.train_samples(samples)``, i.e.
  ``step.ppo_step`` — one micro-batch (``micro_batch_tokens`` = batch × (prompt + completion)), one mini-batch,
  one PPO epoch, so ``logp_old`` is the differentiated pass's own logprob (ratio 1, no pre-pass): the backbone
  over all B × T tokens, the LM head only at the loss tokens' predictor positions (``train/selective.py``: fp32
  ``(B·L, V)`` logits), their logprobs, the token-mean dual-clip PPO loss, backward, clip to 1.0, AdamW.
* **TRL** ``GRPOTrainer`` subclass whose ``_generate_and_score_completions`` returns these fixed completions and
  advantages (no generation, no reward call), timed over ``trainer.train()`` steps (``on_step_begin`` →
  ``on_step_end``: ``_prepare_inputs``, ``compute_loss``, backward, clip to 1.0, AdamW, scheduler, zero grad).
  Configured to do the same work: ``per_device_train_batch_size`` = batch, ``gradient_accumulation_steps`` =
  ``steps_per_generation`` = ``num_iterations`` = 1 (so no extra no-grad pass for old logprobs: ratio 1),
  ``beta=0`` (no reference model; arpo's ``kl_coef`` is 0 too), ``loss_type="dapo"`` (token-mean over all
  completion tokens of the batch — arpo's ``token-mean``), ``use_vllm=False``, fp32, no gradient checkpointing,
  constant schedule and, by default, the very optimiser arpo builds (``torch.optim.AdamW``, lr, betas, eps, weight
  decay 0.01 on every parameter); ``--trl-optimizer default`` keeps TRL's own instead (``adamw_torch_fused``, no
  decay on biases/norms). TRL's fused LM head (``add_fused_lm_head``) computes the logprobs (and, for its metrics,
  the entropy) in vocabulary tiles without materialising the logits, recomputing the tiles in backward; on a CPU
  (no Triton) it scores every position, prompt included (``B·(T−1)`` rows), and keeps the completion's.

Training tokens = batch × (prompt + completion) tokens forwarded and back-propagated per optimiser step; loss
tokens = batch × completion: the same definitions on both sides. Columns: the whole step; ``fwd+loss``,
``backward`` and ``update`` (clip + optimiser step) of it; ``fwd+bwd tok/s`` leaves the update out (in real runs
one update serves many micro-batches, so this is the per-token cost); ``× TRL`` is TRL's time ÷ the side's.

Each side runs in its own subprocess (its own process group, allocator and thread pool, no cross-talk) with
``torch.set_num_threads(--threads)``. By default the sides are started together and stepped in lock-step, one step
at a time in rotating order, so load from other processes on a shared machine falls on every side alike; that
keeps every side resident (SmolLM2: 2–3 GB each between steps, 4–5 GB while stepping), so ``--sequential`` runs them
one after the other instead when memory is short. Model loading, trainer set-up (DeepSpeed builds its CPU comm op
on first use) and ``--warmup`` steps (first touch of the optimiser state) are not timed; then ``--steps`` timed
steps per side, medians. On the 2-core CI box a default run takes 8–13 min, depending on load. Every worker also
counts backbone forwards, backward passes and optimiser steps per step (all must be 1), and prints the tensor
shapes and the first step's grad norm, which must agree between the sides (same weights, batch and objective at
ratio 1; the loss itself is 0 there since the advantages are group-normalised).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

SIDES = ("fsdp", "deepspeed", "trl")
NAMES = {"fsdp": "arpo fsdp (FSDP2)", "deepspeed": "arpo deepspeed (ZeRO-2)", "trl": "TRL GRPOTrainer"}


# ---------------------------------------------------------------------------------------------------- the batch
def make_batch(args: argparse.Namespace, vocab: int) -> dict[str, np.ndarray]:
    """Prompt ids (B, P), completion ids (B, L), one GRPO advantage per sequence (B,): the same on every side."""
    rng = np.random.default_rng(args.seed)
    groups = args.batch // args.group_size
    low, high = min(5, vocab - 1), vocab
    prompts = np.repeat(rng.integers(low, high, size=(groups, args.prompt_len)), args.group_size, axis=0)
    completions = rng.integers(low, high, size=(args.batch, args.completion_len))
    rewards = rng.normal(size=(groups, args.group_size))
    advantages = (rewards - rewards.mean(axis=1, keepdims=True)) / (rewards.std(axis=1, ddof=1, keepdims=True) + 1e-4)
    return {"prompt_ids": prompts, "completion_ids": completions, "advantages": advantages.reshape(-1)}


def _shape(tensor: Any) -> str:
    return f"{tuple(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}"


class Probe:
    """What a worker records: backbone forwards, backward passes through it, optimiser steps, shapes, phase times."""

    def __init__(self, hf_model: Any) -> None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.forwards = 0
        self.backwards = 0
        self.updates = 0
        self.shapes: dict[str, str] = {}
        self.phases: dict[str, float] = {}
        backbone = getattr(hf_model, hf_model.base_model_prefix)
        backbone.register_forward_hook(self._forward, with_kwargs=True)
        hf_model.get_output_embeddings().register_forward_hook(self._lm_head)
        register_optimizer_step_post_hook(self._update)

    def _forward(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        self.forwards += 1
        ids = kwargs.get("input_ids")
        if ids is None and args:
            ids = args[0]
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        self.shapes["input_ids"] = str(tuple(ids.shape))
        self.shapes["hidden"] = _shape(hidden)
        if hidden.requires_grad:
            hidden.register_hook(self._backward)

    def _lm_head(self, module: Any, args: tuple[Any, ...], output: Any) -> None:
        self.shapes["lm_head"] = f"{tuple(args[0].shape)} -> {_shape(output)}"

    def _backward(self, grad: Any) -> None:
        self.backwards += 1

    def _update(self, *_: Any) -> None:
        self.updates += 1

    def timed(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with its wall time added to ``phases[phase]``."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - start

        return wrapper

    def begin(self) -> None:
        self._counts = (self.forwards, self.backwards, self.updates)
        self.phases = {}
        self._start = time.perf_counter()

    def end(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self._start
        now = (self.forwards, self.backwards, self.updates)
        counts = [after - before for after, before in zip(now, self._counts, strict=True)]
        return {"time": elapsed, "phases": dict(self.phases), "counts": counts}


class Channel:
    """A worker's side of the lock-step protocol: wait for ``step`` on stdin, answer JSON lines on ``--result-fd``."""

    def __init__(self, fd: int) -> None:
        self.out = os.fdopen(fd, "w", buffering=1)

    def send(self, kind: str, **payload: Any) -> None:
        self.out.write(json.dumps({"kind": kind, **payload}) + "\n")
        self.out.flush()

    def wait(self) -> None:
        if sys.stdin.readline().strip() != "step":
            raise SystemExit(0)  # the driver gave up on this side


# ---------------------------------------------------------------------------------------------------- arpo
def run_arpo(args: argparse.Namespace, backend: str, channel: Channel) -> None:
    from arpo_backends.batching import TrajectorySample
    from arpo_backends.train import TrainerConfig, make_trainer
    from arpo_backends.train.config import OptimConfig
    from arpo_backends.train.dist import finish

    config = TrainerConfig(
        backend=backend,
        model=args.model,
        optim=OptimConfig(lr=args.lr),
        micro_batch_tokens=args.batch * (args.prompt_len + args.completion_len),
    )
    trainer = make_trainer(config)
    probe = Probe(trainer.unwrapped)
    # ppo_step calls these through the trainer (its ModelRunner), so instance attributes intercept them; the
    # forward hook is ``token_stats`` (logprobs of the loss tokens) or, in arpo before selective logits, ``logits``
    forward = "token_stats" if hasattr(trainer, "token_stats") else "logits"
    setattr(trainer, forward, probe.timed("forward", getattr(trainer, forward)))
    trainer.backward = probe.timed("backward", trainer.backward)  # type: ignore[method-assign]
    trainer.update = probe.timed("update", trainer.update)  # type: ignore[method-assign]

    batch = make_batch(args, int(trainer.unwrapped.config.vocab_size))
    p, n = args.prompt_len, args.prompt_len + args.completion_len
    samples = []
    for row in range(args.batch):
        mask = np.arange(n) >= p
        samples.append(
            TrajectorySample(
                group_id=f"g{row // args.group_size}",
                trajectory=row % args.group_size,
                token_ids=np.concatenate([batch["prompt_ids"][row], batch["completion_ids"][row]]).astype(np.int64),
                loss_mask=mask,
                advantages=np.where(mask, batch["advantages"][row], 0.0),
                behaviour_logprobs=np.full(n, np.nan),
                prompt_length=p,
            )
        )
    channel.send("ready")
    first: dict[str, float] = {}
    for _ in range(args.warmup + args.steps):
        channel.wait()
        probe.begin()
        metrics = trainer.train_samples(samples)
        record = probe.end()
        first = first or {"loss": metrics["loss"], "grad_norm": metrics["grad_norm"]}
        channel.send("step", **record)
    trainer.close()
    channel.send("done", shapes=probe.shapes, first=first)
    finish(0)


# ---------------------------------------------------------------------------------------------------- TRL
def run_trl(args: argparse.Namespace, channel: Channel) -> None:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from arpo_backends.models.resolve import resolve_model

    folder = resolve_model(args.model)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.config.use_cache = False
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    probe = Probe(model)
    batch = make_batch(args, int(model.config.vocab_size))
    fixed = {
        "prompt_ids": torch.from_numpy(batch["prompt_ids"]).long(),
        "prompt_mask": torch.ones(args.batch, args.prompt_len, dtype=torch.long),
        "completion_ids": torch.from_numpy(batch["completion_ids"]).long(),
        "completion_mask": torch.ones(args.batch, args.completion_len, dtype=torch.long),
        "advantages": torch.from_numpy(batch["advantages"]).float(),
        "num_items_in_batch": torch.tensor(float(args.batch * args.completion_len)),
    }
    first: dict[str, float] = {}

    class FixedCompletionsGRPO(GRPOTrainer):  # type: ignore[misc]
        """GRPO on fixed completions: generation and rewards replaced by the benchmark's batch."""

        def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
            return {k: v.clone() for k, v in fixed.items()}

        def _get_per_token_logps_and_entropies(self, model: Any, input_ids: Any, *a: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            logps, entropies, aux = super()._get_per_token_logps_and_entropies(model, input_ids, *a, **kw)
            probe.phases["forward"] = probe.phases.get("forward", 0.0) + time.perf_counter() - start
            probe.shapes["logps"] = _shape(logps) + " (fused LM head, no logits tensor)"
            if entropies is not None:
                probe.shapes["entropy"] = _shape(entropies) + " (for its metrics, no grad)"
            return logps, entropies, aux

        def _clip_grad_norm(self, model: Any) -> Any:
            start = time.perf_counter()
            norm = super()._clip_grad_norm(model)
            probe.phases["update"] = probe.phases.get("update", 0.0) + time.perf_counter() - start
            first.setdefault("grad_norm", float(norm))
            return norm

        def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
            loss = super().training_step(model, inputs, num_items_in_batch)
            first.setdefault("loss", float(loss))
            return loss

    class LockStep(TrainerCallback):  # type: ignore[misc]
        """Waits for the driver before each step; times ``on_step_begin`` → ``on_step_end`` and the optimiser."""

        def on_step_begin(self, *_: Any, **__: Any) -> None:
            channel.wait()
            probe.begin()

        def on_pre_optimizer_step(self, *_: Any, **__: Any) -> None:
            self.optimizer_start = time.perf_counter()

        def on_optimizer_step(self, *_: Any, **__: Any) -> None:
            elapsed = time.perf_counter() - self.optimizer_start
            probe.phases["update"] = probe.phases.get("update", 0.0) + elapsed

        def on_step_end(self, *_: Any, **__: Any) -> None:
            channel.send("step", **probe.end())

    steps = args.warmup + args.steps
    dataset = Dataset.from_dict({"prompt": [f"prompt {i}" for i in range(args.batch // args.group_size * steps)]})
    optimizers: tuple[Any, Any] = (None, None)
    if args.trl_optimizer == "same":  # arpo's make_optimizer: torch AdamW, one group, decay 0.01 everywhere
        adamw = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
        optimizers = (adamw, None)

    def zero_reward(completions: list[Any], **_: Any) -> list[float]:
        return [0.0] * len(completions)

    with tempfile.TemporaryDirectory() as output_dir:
        config = GRPOConfig(
            output_dir=output_dir,
            per_device_train_batch_size=args.batch,
            num_generations=args.group_size,
            gradient_accumulation_steps=1,
            steps_per_generation=1,
            num_iterations=1,
            beta=0.0,
            loss_type="dapo",
            epsilon=0.2,
            temperature=1.0,
            max_completion_length=args.completion_len,
            use_vllm=False,
            bf16=False,
            fp16=False,
            gradient_checkpointing=False,
            learning_rate=args.lr,
            weight_decay=0.01,
            adam_beta1=0.9,
            adam_beta2=0.999,
            adam_epsilon=1e-8,
            lr_scheduler_type="constant",
            warmup_steps=0,
            max_grad_norm=1.0,
            max_steps=steps,
            logging_steps=10**9,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            disable_dropout=True,
            use_cpu=True,
            dataloader_num_workers=0,
            seed=args.seed,
        )
        trainer = FixedCompletionsGRPO(
            model=model,
            reward_funcs=zero_reward,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[LockStep()],
            optimizers=optimizers,
        )
        trainer.accelerator.backward = probe.timed("backward", trainer.accelerator.backward)
        channel.send("ready")
        trainer.train()
        optimizer = type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__
        fused = bool(trainer.optimizer.param_groups[0].get("fused"))
    channel.send("done", shapes=probe.shapes, first=first, version=trl.__version__, optimizer=f"{optimizer} {fused=}")


# ---------------------------------------------------------------------------------------------------- driver
@dataclass
class Side:
    """The driver's view of one worker."""

    name: str
    proc: subprocess.Popen[str]
    results: IO[str]
    log: Path
    steps: list[dict[str, Any]] = field(default_factory=list)
    done: dict[str, Any] = field(default_factory=dict)
    failed: bool = False

    def receive(self, kind: str) -> dict[str, Any] | None:
        line = self.results.readline()
        if not line:
            self.fail(f"exited (code {self.proc.wait()}) instead of sending {kind!r}")
            return None
        message: dict[str, Any] = json.loads(line)
        return message

    def fail(self, why: str) -> None:
        self.failed = True
        print(f"{self.name}: FAILED, {why}; the end of its log ({self.log}):", flush=True)
        print("\n".join(self.log.read_text(errors="replace").splitlines()[-40:]), flush=True)
        if self.proc.poll() is None:
            self.proc.kill()


def start(name: str, argv: list[str], args: argparse.Namespace, folder: Path) -> Side:
    read_fd, write_fd = os.pipe()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)  # each worker makes its own world of one
    log = folder / f"{name}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", name, "--result-fd", str(write_fd)]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, pass_fds=(write_fd,), text=True
        )
    os.close(write_fd)
    return Side(name, proc, os.fdopen(read_fd), log)


def drive(sides: list[Side], args: argparse.Namespace) -> None:
    """Lock-step: each round steps every live side once, starting one further along each round."""
    for side in sides:
        if side.receive("ready") is not None:
            print(f"{side.name}: ready", flush=True)
    total = args.warmup + args.steps
    for round_ in range(total):
        live = [s for s in sides if not s.failed]
        for side in live[round_ % max(len(live), 1) :] + live[: round_ % max(len(live), 1)]:
            assert side.proc.stdin is not None
            try:
                side.proc.stdin.write("step\n")
                side.proc.stdin.flush()
            except OSError:  # it died while idle (e.g. killed for memory)
                side.fail(f"exited (code {side.proc.wait()}) before step {round_ + 1}")
                continue
            record = side.receive("step")
            if record is None:
                continue
            side.steps.append(record)
            tag = "warm-up" if round_ < args.warmup else "timed"
            phases = ", ".join(f"{k} {v:.2f}" for k, v in record["phases"].items())
            print(f"  {side.name} step {round_ + 1}/{total} ({tag}): {record['time']:.2f} s ({phases})", flush=True)
    for side in sides:
        if side.failed:
            continue
        done = side.receive("done")
        if done is not None:
            side.done = done
        side.proc.wait()


def report(args: argparse.Namespace, sides: list[Side]) -> None:
    ok = [s for s in sides if not s.failed and s.done]
    if not ok:
        return
    tokens = args.batch * (args.prompt_len + args.completion_len)
    loss_tokens = args.batch * args.completion_len

    def med(side: Side, key: str) -> float:
        timed = side.steps[args.warmup :]
        if key == "time":
            return statistics.median(r["time"] for r in timed)
        if key == "fwd+loss":
            return statistics.median(
                r["time"] - r["phases"].get("backward", 0.0) - r["phases"].get("update", 0.0) for r in timed
            )
        if key == "fwd+bwd":
            return statistics.median(r["time"] - r["phases"].get("update", 0.0) for r in timed)
        return statistics.median(r["phases"].get(key, 0.0) for r in timed)

    trl = next((s for s in ok if s.name == "trl"), None)
    print()
    print(
        f"model {args.model}; {args.batch} sequences (groups of {args.group_size}) × ({args.prompt_len} prompt + "
        f"{args.completion_len} completion) = {tokens} training tokens ({loss_tokens} loss tokens) per step; fp32, "
        f"{args.threads} threads; {args.warmup} warm-up + {args.steps} timed steps "
        f"({'sequential' if args.sequential else 'lock-step'}), medians"
    )
    if trl is not None:
        optimizer = f"{trl.done.get('optimizer')} (--trl-optimizer {args.trl_optimizer})"
        print(f"TRL {trl.done.get('version')}, optimiser {optimizer}")
    print()
    print(
        "| side | step s | fwd+loss s | backward s | update s | tokens/s | loss tokens/s | fwd+bwd tok/s "
        "| × TRL (step) | × TRL (fwd+bwd) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for side in ok:
        step, fwd_bwd = med(side, "time"), med(side, "fwd+bwd")
        ratio = f"{med(trl, 'time') / step:.2f}×" if trl else "–"
        ratio_fb = f"{med(trl, 'fwd+bwd') / fwd_bwd:.2f}×" if trl else "–"
        print(
            f"| {NAMES[side.name]} | {step:.2f} | {med(side, 'fwd+loss'):.2f} | {med(side, 'backward'):.2f} | "
            f"{med(side, 'update'):.2f} | {tokens / step:,.0f} | {loss_tokens / step:,.0f} | "
            f"{tokens / fwd_bwd:,.0f} | {ratio} | {ratio_fb} |"
        )
    print()
    print("checks (per timed step: backbone forwards / backward passes / optimiser steps; shapes; first grad norm):")
    norms = []
    for side in ok:
        counts = [max(r["counts"][k] for r in side.steps[args.warmup :]) for k in range(3)]
        shapes = "; ".join(f"{k} {v}" for k, v in side.done["shapes"].items())
        first = side.done["first"]
        norms.append(first["grad_norm"])
        print(f"  {side.name:9s} {'/'.join(map(str, counts))}; {shapes}; grad norm {first['grad_norm']:.6f}")
    spread = (max(norms) - min(norms)) / max(max(norms), 1e-12)
    print(f"  first-step grad norms agree to {spread:.1e} (relative){'' if spread < 1e-4 else ' — MISMATCH'}")


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    channel = Channel(args.result_fd)
    if args.worker == "trl":
        run_trl(args, channel)
    else:
        run_arpo(args, args.worker, channel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="built-in name or HF folder")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per side first")
    parser.add_argument("--batch", type=int, default=8, help="sequences per optimiser step")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt (num_generations)")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--completion-len", type=int, default=128)
    parser.add_argument("--backends", default=",".join(SIDES), help=f"comma-separated, of {', '.join(SIDES)}")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every worker")
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--trl-optimizer",
        choices=("same", "default"),
        default="same",
        help="same: arpo's torch AdamW; default: GRPOConfig's own (adamw_torch_fused)",
    )
    parser.add_argument("--sequential", action="store_true", help="one side after the other, not lock-step")
    parser.add_argument("--quick", action="store_true", help="tiny model, 8 × (32 + 32), 1 + 2 steps")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--result-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.model, args.batch, args.group_size, args.prompt_len, args.completion_len = "tiny", 8, 4, 32, 32
        args.steps, args.warmup = 2, 1
    if args.batch % args.group_size:
        parser.error(f"--batch {args.batch} must be a multiple of --group-size {args.group_size}")
    names = [s.strip() for s in args.backends.split(",") if s.strip()]
    if unknown := [s for s in names if s not in SIDES]:
        parser.error(f"unknown backends {unknown}; choose from {', '.join(SIDES)}")
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("backends", "quick", "worker")]
    argv = [a for a in argv if not a.startswith(("--sequential", "--result-fd"))]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="train_tokens-") as tmp:
        sides: list[Side] = []
        groups = [[n] for n in names] if args.sequential else [names]
        for group in groups:
            batch = [start(name, argv, args, Path(tmp)) for name in group]
            print(f"started {', '.join(group)} (logs in {tmp})", flush=True)
            drive(batch, args)
            sides += batch
        report(args, sides)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
