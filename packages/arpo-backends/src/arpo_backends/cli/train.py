"""``arpo train``: the ARPO loop end to end — SFT cold start, asynchronous rollouts, a trainer, evaluations.

    arpo train                                         # the embedded default: learns tools on a 2-core CPU
    arpo train --algo grpo                             # the same run with GRPO (N = M: no branching)
    arpo train --config run.toml --backend deepspeed --rollout-url http://gpu1:8000/v1 --nproc-per-node 8

What happens, in order (rank 0 drives; the other ranks join every collective step):

1. Every input is checked before anything long starts (backend, model, datasets, servers, tools): one sentence
   and exit code 2 on the first problem.
2. Inference: the ``--rollout-url`` servers, or arpo's CPU server started here (and stopped at the end).
3. Held-out evaluation of the starting model (greedy, through the same agent loop and tools as ``arpo eval``).
4. The SFT cold start when enabled (``arpo sft`` on generated or given demonstrations), then its evaluation.
5. ARPO (or GRPO): ``arpo_core.runtime.train_loop`` — rollouts keep being generated while the trainer steps;
   weights are published after every step; checkpoints every ``save_every`` steps, at the end and on Ctrl-C;
   with ``train.eval_every`` N, a held-out evaluation after every N-th step (see ``_EvalGate``).
6. The final model exported in Hugging Face format, a last evaluation, a PNG of reward and tool calls per
   step, and a report of what changed and where everything went.

The run folder (``--output-dir``) holds ``config.toml``, ``metrics.jsonl``, ``rollouts.jsonl`` (every rollout tree
the engine finished, one group a line, readable with ``arpo_core.tree.jsonl.read_jsonl``), ``checkpoints/``, ``sft/``,
``model/``, ``evals/``, ``training.png``, ``report.md`` and the server's log. ``--resume`` continues from its
newest complete checkpoint (the SFT stage is skipped when its model is there).
"""

from __future__ import annotations

import gc
import json
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from arpo_backends.cli.options import Launcher, MasterAddr, MasterPort, Nnodes, NodeRank, NprocPerNode

__all__ = ["app", "train_command"]

app = typer.Typer(
    add_completion=False, help="Train a tool-using agent with ARPO (the embedded default without options)."
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@dataclass
class _Inputs:
    """What the checks before the run resolved (so the run does not redo them)."""

    train_samples: list[Any]
    eval_samples: list[Any]
    dataset_name: str


@dataclass
class _RunState:
    evals: dict[str, dict[str, float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- checks
def _load_samples(spec: str, *, split: str, limit: int | None) -> list[Any]:
    from arpo_core.data import load_samples
    from arpo_core.data.builtin import builtin_samples

    if spec.startswith("builtin:"):
        return builtin_samples(spec, None if limit is None else limit, split=split)
    return load_samples(spec, limit=limit)


def _check_inputs(cfg: Any) -> _Inputs:
    """Raise ``ValueError`` (one sentence) on the first input that cannot work."""
    from transformers import AutoConfig

    from arpo_backends.cli.server import check_reachable
    from arpo_backends.train import available_backends
    from arpo_backends.train.model import model_folder

    known = available_backends()
    if cfg.trainer.backend not in known:
        raise ValueError(f"unknown backend {cfg.trainer.backend!r}; choose one of: {', '.join(sorted(known))}.")
    folder = model_folder(cfg.trainer)
    try:
        AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"the model at {folder} cannot be loaded ({str(err).splitlines()[0]}); pass a Hugging Face folder with "
            "config.json and weights, or smollm2-135m-instruct / tiny."
        ) from None
    train = _load_samples(cfg.train.dataset, split="train", limit=None)
    if not train:
        raise ValueError(f"the dataset {cfg.train.dataset} has no prompts; pass a dataset with at least one row.")
    no_truth = [s.id for s in train if not s.ground_truth]
    if no_truth:
        raise ValueError(
            f"{len(no_truth)} prompt(s) of {cfg.train.dataset} have no ground truth (e.g. {no_truth[0]!r}); the reward "
            "needs one: add a 'reward_model.ground_truth' (verl) or 'answer' field."
        )
    if cfg.train.eval_dataset is not None:
        evals = _load_samples(cfg.train.eval_dataset, split="test", limit=cfg.train.eval_size)
    elif cfg.train.dataset.startswith("builtin:"):
        evals = _load_samples(cfg.train.dataset, split="test", limit=cfg.train.eval_size)
    else:
        evals = []
    if not evals and (cfg.train.eval_dataset is not None or cfg.train.dataset.startswith("builtin:")):
        source = cfg.train.eval_dataset or f"{cfg.train.dataset}'s test split"
        raise ValueError(
            f"the held-out set ({source}) has no questions, so nothing can show what training changed; pass a "
            "train.eval_dataset with at least one row."
        )
    if cfg.sft.enabled and cfg.sft.demos == "builtin":
        name = cfg.train.dataset.removeprefix("builtin:")
        if not cfg.train.dataset.startswith("builtin:") or name not in _demo_generators():
            raise ValueError(
                f"sft.demos = 'builtin' needs a builtin dataset with a demonstration generator, not "
                f"{cfg.train.dataset!r}; pass sft.demos=FILE.jsonl or set sft.enabled=false."
            )
    elif cfg.sft.enabled and not Path(cfg.sft.demos).is_file():
        raise ValueError(f"sft.demos {cfg.sft.demos} does not exist; pass a demonstrations file or 'builtin'.")
    if cfg.tools is not None and not Path(cfg.tools).is_file():
        raise ValueError(f"tools {cfg.tools} does not exist; pass an mcpServers JSON file (or leave it out).")
    for url in cfg.inference.rollout_urls:
        check_reachable(url)
    if cfg.train.groups_per_step < 1:
        raise ValueError("train.groups_per_step must be ≥ 1.")
    return _Inputs(train, evals, cfg.train.dataset)


def _demo_generators() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="arpo.demos")}


# ---------------------------------------------------------------------------------------------------- pieces
def _tools_config(cfg: Any, run_dir: Path) -> Path | None:
    """The mcpServers file the run uses: the user's, or arpo's own tools with ``tool_options`` applied."""
    if cfg.tools is not None:
        return Path(cfg.tools)
    if not cfg.tool_options:
        return None
    servers = {}
    for name in ("python", "search"):
        args = ["-m", "arpo_tools.cli", "serve", name]
        for option in cfg.tool_options.get(name, []):
            args += ["-o", option]
        servers[name] = {"command": sys.executable, "args": args}
    path = run_dir / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}, indent=2))
    return path


def _open_tools(path: Path | None) -> Any:
    from arpo_core.cli.eval_cmd import _tool_client_factory

    return _tool_client_factory()(path)


def _weight_target(cfg: Any, urls: tuple[str, ...], run_dir: Path) -> Any:
    from arpo_backends.cli.server import is_arpo_server
    from arpo_core.runtime.trainer import WeightTarget

    kind = cfg.inference.weight_sync
    if kind == "auto":  # arpo's CPU server (started here or given) reloads full weights; vLLM: LoRA or NCCL
        if not cfg.inference.rollout_urls or all(is_arpo_server(u) for u in urls):
            kind = "cpu_server"
        else:
            kind = "vllm_lora" if cfg.trainer.lora else "vllm_nccl"
    return WeightTarget(kind, urls, run_dir / "weights")


async def _evaluate(
    cfg: Any, url: str, model: str, samples: list[Any], tools: Any, label: str, progress: Any = None
) -> dict[str, Any]:
    """Greedy held-out evaluation; ``progress``: a live rich ``Progress`` to show it in (else one of its own)."""
    from arpo_core.runtime.chat import OpenAIChatClient

    async with OpenAIChatClient(url, model) as client:
        report = await _evaluate_with(cfg, client, model, samples, tools, label, progress)
    return {**report.summary(), "seconds": report.seconds, "_report": report.to_dict()}


async def _evaluate_with(
    cfg: Any, client: Any, model: str, samples: list[Any], tools: Any, label: str, progress: Any = None
) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from arpo_core.algo.rewards import make_reward_function
    from arpo_core.runtime.evaluate import evaluate

    if progress is None:  # rich allows one live display at a time: during RL the loop's is passed in
        with Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            transient=True,
        ) as own:  # fmt: skip
            return await _evaluate_with(cfg, client, model, samples, tools, label, own)
    task = progress.add_task(f"eval ({label})", total=len(samples), info="")
    try:
        return await evaluate(
            client, samples, tools, model=model, dataset=cfg.train.dataset, k=1, protocol="tags-inline",
            concurrency=cfg.inference.eval_concurrency, call_limit=cfg.algo.branching.call_limit,
            max_tokens=cfg.rollout.max_segment_tokens or cfg.rollout.max_response_tokens, temperature=0.0,
            on_episode=lambda: progress.advance(task), reward=make_reward_function(cfg.algo.reward),
        )  # fmt: skip
    finally:
        progress.remove_task(task)


def _record_eval(state: _RunState, sinks: Any, run_dir: Path, label: str, step: int, summary: dict[str, Any]) -> None:
    report = summary.pop("_report", None)
    state.evals[label] = dict(summary)
    slug = label.lower().replace(" ", "-")
    (run_dir / "evals").mkdir(exist_ok=True)
    if report is not None:
        (run_dir / "evals" / f"{slug}.json").write_text(json.dumps(report, indent=1))
    sinks.log(step, {**summary, "label": label}, phase="eval")
    reward = f"reward {summary['mean_reward']:+.3f}, " if "mean_reward" in summary else ""
    interval = f" [95%: {summary['pass@1_low']:.3f}–{summary['pass@1_high']:.3f}]" if "pass@1_low" in summary else ""
    typer.echo(
        f"eval {label}: {reward}accuracy {summary['pass@1']:.3f}{interval}, F1 {summary['mean_f1']:.3f}, "
        f"{summary['tool_calls_per_episode']:.2f} tool calls/question, {summary['format_errors']:.0f} format errors"
    )


class _EvalGate:
    """Held-out evaluations during RL (``train.eval_every``), on rank 0, never across a weight publish.

    The loop's callbacks are synchronous and run inside it, so ``log`` (called after step N's weights are out)
    only starts the evaluation, as a task beside the loop; the trainer's next ``publish_weights`` — wrapped by
    :meth:`hold_publishes` — waits until it is over. So an evaluation sees exactly the policy after step N and no
    weight swap mid-way, while the loop carries on meanwhile: rollouts for the next steps (async and sync mode
    alike: the engine shares the inference server with the evaluation) and the next ``train_step``. Any time the
    next publish spends waiting is logged as ``eval_wait_seconds`` and is inside that step's ``train_seconds``.
    An evaluation that fails is raised at the next step's ``log``, through the loop's error path (checkpoint first).
    """

    def __init__(self) -> None:
        self._idle = threading.Event()
        self._idle.set()
        self._error: Exception | None = None
        self._waited = 0.0

    def start(self, task_group: Any, evaluation: Callable[[], Awaitable[None]]) -> None:
        self._idle.clear()

        async def run() -> None:
            try:
                await evaluation()
            except Exception as err:
                self._error = err
            finally:
                self._idle.set()

        task_group.start_soon(run)

    def wait(self) -> None:
        """Block (in the loop's worker thread) until no evaluation is running."""
        began = time.perf_counter()
        self._idle.wait()
        self._waited += time.perf_counter() - began

    def take_waited(self) -> float:
        waited, self._waited = self._waited, 0.0
        return waited

    def raise_failure(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def hold_publishes(self, trainer: Any) -> Any:
        """``trainer`` with ``publish_weights`` held while an evaluation runs (everything else passed through)."""
        return _HeldPublishes(trainer, self)


class _HeldPublishes:
    def __init__(self, trainer: Any, gate: _EvalGate) -> None:
        self._trainer = trainer
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)

    def publish_weights(self, target: Any) -> Any:
        self._gate.wait()
        return self._trainer.publish_weights(target)


# ---------------------------------------------------------------------------------------------------- the run
def run_train(cfg: Any, inputs: _Inputs, run_dir: Path, *, resume: bool, tensorboard: bool, wandb: str | None) -> None:
    """Every rank runs this; rank 0 drives rollouts, evaluations and the report."""
    import anyio

    from arpo_backends.train import finish, init_distributed

    ctx = init_distributed()
    stop = {"requested": False}
    if ctx.is_main:
        signal.signal(signal.SIGINT, lambda *_: stop.update(requested=True))
        anyio.run(_leader, cfg, inputs, run_dir, ctx, stop, resume, tensorboard, wandb)
    else:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the leader decides when to stop
        _follower(cfg, run_dir, ctx, resume)
    finish(130 if stop["requested"] else 0)


def _sft(cfg: Any, run_dir: Path) -> str:
    """The SFT stage (collective); returns the model folder RL starts from."""
    from arpo_backends.cli.sft import run_sft

    model_dir = run_dir / "sft" / "model"
    if not cfg.sft.enabled:
        return str(cfg.trainer.model)
    if (model_dir / "config.json").is_file():
        return str(model_dir)  # done in an earlier (resumed) run
    demos = Path(cfg.sft.demos) if cfg.sft.demos != "builtin" else run_dir / "sft" / "demos.jsonl"
    sft_config = cfg.trainer.model_copy(update={"optim": cfg.trainer.optim.model_copy(update={"lr": cfg.sft.lr})})
    run_sft(
        data=demos, output_dir=run_dir / "sft", config=sft_config, epochs=cfg.sft.epochs,
        batch_size=cfg.sft.batch_size, max_length=cfg.sft.max_length, save_every=0, resume=None,
        checkpoint_at_end=False, handle_sigint=False,
    )  # fmt: skip
    gc.collect()
    return str(model_dir)


def _rl_trainer(cfg: Any, start_model: str, run_dir: Path, ctx: Any, resume: bool) -> tuple[Any, dict[str, Any]]:
    from arpo_backends.train import make_trainer

    trainer = make_trainer(cfg.trainer.model_copy(update={"model": start_model}), ctx)
    position: dict[str, Any] = {}
    checkpoints = run_dir / "checkpoints"
    if resume and checkpoints.is_dir() and any(checkpoints.glob("step-*")):
        position = dict(trainer.load(checkpoints))
    return trainer, position


def _loop(cfg: Any, trainer: Any, ctx: Any, target: Any, run_dir: Path, **hooks: Any) -> Any:
    from arpo_core.runtime.train_loop import LoopSettings, TrainLoop

    settings = LoopSettings(
        steps=cfg.train.steps, groups_per_step=cfg.train.groups_per_step, max_staleness=cfg.train.max_staleness,
        mode=cfg.train.mode, save_every=cfg.train.save_every, checkpoint_dir=run_dir / "checkpoints",
    )  # fmt: skip
    return TrainLoop(trainer, ctx, settings=settings, advantage=cfg.algo.advantage, target=target, **hooks)


def _follower(cfg: Any, run_dir: Path, ctx: Any, resume: bool) -> None:
    start_model = _sft(cfg, run_dir)
    trainer, _ = _rl_trainer(cfg, start_model, run_dir, ctx, resume)
    target = ctx.broadcast_object(None)
    trainer.publish_weights(target)
    _loop(cfg, trainer, ctx, target, run_dir).run_follower()
    trainer.export_hf(run_dir / "model")
    trainer.close()


async def _leader(
    cfg: Any, inputs: _Inputs, run_dir: Path, ctx: Any, stop: dict[str, bool], resume: bool, tb: bool, wandb: str | None
) -> None:
    from arpo_backends.cli.server import start_cpu_server
    from arpo_core.report import make_sinks

    state = _RunState()
    began = time.perf_counter()
    sinks = make_sinks(run_dir, tensorboard=tb, wandb=wandb or False, config=cfg.model_dump(mode="json"))
    tools_path = _tools_config(cfg, run_dir)
    if cfg.sft.enabled and cfg.sft.demos == "builtin" and not (run_dir / "sft" / "model" / "config.json").is_file():
        name = cfg.train.dataset.removeprefix("builtin:")
        _demo_generators()[name].load()(run_dir / "sft" / "demos.jsonl", None, cfg.seed)
    async with _open_tools(tools_path) as tools:
        if cfg.inference.rollout_urls:
            urls = tuple(cfg.inference.rollout_urls)
            model_name = cfg.inference.served_model_name or cfg.trainer.model
            server_cm: Any = None
        else:
            typer.echo("no --rollout-url: starting arpo's CPU inference server (stopped at the end)")
            server_cm = start_cpu_server(
                cfg.trainer.model, run_dir / "server.log", model_name=cfg.inference.served_model_name or "policy",
                threads=cfg.inference.server_threads, prefix_cache_tokens=cfg.inference.server_prefix_cache_tokens,
            )  # fmt: skip
            server = server_cm.__enter__()
            urls, model_name = (server.url,), server.model_name
            typer.echo(f"CPU server: {server.url} (model {server.model_name!r}, log {server.log})")
        try:
            await _leader_run(cfg, inputs, run_dir, ctx, stop, resume, state, sinks, tools, urls, model_name, began)
        finally:
            if server_cm is not None:
                server_cm.__exit__(None, None, None)
            sinks.close()


async def _leader_run(
    cfg: Any,
    inputs: _Inputs,
    run_dir: Path,
    ctx: Any,
    stop: dict[str, bool],
    resume: bool,
    state: _RunState,
    sinks: Any,
    tools: Any,
    urls: tuple[str, ...],
    model_name: str,
    began: float,
) -> None:
    import anyio

    checkpoints = run_dir / "checkpoints"
    resuming = resume and checkpoints.is_dir() and any(checkpoints.glob("step-*"))
    if inputs.eval_samples and not resuming and cfg.train.eval_base:
        t = time.perf_counter()
        label = "base" if cfg.sft.enabled else "before"
        _record_eval(
            state,
            sinks,
            run_dir,
            label,
            0,
            await _evaluate(cfg, urls[0], model_name, inputs.eval_samples, tools, label),
        )
        state.timings["eval"] = time.perf_counter() - t

    t = time.perf_counter()
    start_model = await anyio.to_thread.run_sync(_sft, cfg, run_dir)
    state.timings["sft"] = time.perf_counter() - t
    trainer, position = await anyio.to_thread.run_sync(_rl_trainer, cfg, start_model, run_dir, ctx, resume)
    target = _weight_target(cfg, urls, run_dir)
    ctx.broadcast_object(target)
    await anyio.to_thread.run_sync(trainer.publish_weights, target)
    if cfg.sft.enabled and inputs.eval_samples and not resuming:
        t = time.perf_counter()
        _record_eval(
            state,
            sinks,
            run_dir,
            "after SFT",
            0,
            await _evaluate(cfg, urls[0], model_name, inputs.eval_samples, tools, "after SFT"),
        )
        state.timings["eval"] = state.timings.get("eval", 0.0) + time.perf_counter() - t

    t = time.perf_counter()
    result = await _rl(
        cfg, inputs, run_dir, ctx, stop, trainer, target, tools, urls, model_name, position, sinks, state
    )
    state.timings["rl"] = time.perf_counter() - t
    await anyio.to_thread.run_sync(trainer.export_hf, run_dir / "model")
    await anyio.to_thread.run_sync(trainer.close)
    if inputs.eval_samples and not stop["requested"]:
        t = time.perf_counter()
        label = "after GRPO" if cfg.algo.branching.global_samples == cfg.algo.branching.budget else "after ARPO"
        _record_eval(
            state,
            sinks,
            run_dir,
            label,
            result.steps_done,
            await _evaluate(cfg, urls[0], model_name, inputs.eval_samples, tools, label),
        )
        state.timings["eval"] = state.timings.get("eval", 0.0) + time.perf_counter() - t
    state.timings["total"] = time.perf_counter() - began
    _finish_report(cfg, run_dir, state, result)


async def _rl(
    cfg: Any,
    inputs: _Inputs,
    run_dir: Path,
    ctx: Any,
    stop: dict[str, bool],
    trainer: Any,
    target: Any,
    tools: Any,
    urls: tuple[str, ...],
    model_name: str,
    position: Mapping[str, Any],
    sinks: Any,
    state: _RunState,
) -> Any:
    import anyio
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from arpo_core.algo.rewards import make_reward_function
    from arpo_core.cli.rollout_cmd import _vocab_size
    from arpo_core.runtime.engine import RolloutEngine
    from arpo_core.runtime.group_rollout import first_leaf
    from arpo_core.runtime.openai_client import OpenAITokenClient
    from arpo_core.runtime.server_tokenizer import ServerTokenizer
    from arpo_core.runtime.train_loop import PromptSource
    from arpo_core.tree.jsonl import write_jsonl

    clients = [OpenAITokenClient(url, model_name) for url in urls]
    tokenizer = ServerTokenizer(urls[0], model_name)
    vocab = await _vocab_size(urls[0], model_name, cfg.algo.entropy.vocab_size)
    engine = RolloutEngine(
        clients, tokenizer, tools, cfg.tool_calls.make_parser(), cfg, vocab_size=vocab,
        reward_fn=make_reward_function(cfg.algo.reward),
    )  # fmt: skip
    prompts = PromptSource(
        inputs.train_samples, tokenizer.encode_chat, seed=cfg.seed, consumed=int(position.get("prompts_consumed", 0))
    )
    start = trainer.policy_version
    every = cfg.train.eval_every if inputs.eval_samples else 0
    gate = _EvalGate()
    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
    ) as progress:  # fmt: skip
        steps = progress.add_task("train steps", total=cfg.train.steps, completed=start, info="")
        rollout = progress.add_task("rollout groups", total=cfg.train.groups_per_step, info="")

        async def evaluate_at(step: int) -> None:
            label = f"step {step}"
            served = getattr(trainer, "served_model_name", None) or model_name  # vLLM LoRA: this version's name
            summary = await _evaluate(cfg, urls[0], served, inputs.eval_samples, tools, label, progress)
            _record_eval(state, sinks, run_dir, label, step, summary)

        def on_group(group: Any, kept: bool) -> None:
            progress.advance(rollout)
            # every finished group, trained on or dropped as stale, kept for inspection and replay
            write_jsonl(run_dir / "rollouts.jsonl", [group.tree], append=True)

        def log(step: int, metrics: Mapping[str, float]) -> None:
            gate.raise_failure()
            sinks.log(step, {**metrics, "eval_wait_seconds": gate.take_waited()} if every else metrics, phase="train")
            progress.update(
                steps, advance=1,
                info=f"reward {metrics['reward_mean']:+.3f}  tools/traj {metrics['tool_calls_per_trajectory']:.2f}",
            )  # fmt: skip
            progress.reset(rollout, total=cfg.train.groups_per_step)
            done = step + 1  # the last step's policy is evaluated after the loop ("after ARPO")
            if every and done % every == 0 and done < cfg.train.steps and not stop["requested"]:
                gate.start(evaluations, lambda: evaluate_at(done))

        def on_publish(version: int) -> None:
            name = getattr(trainer, "served_model_name", None)
            if name:  # vLLM LoRA: each version is served under a new adapter name
                for client in clients:
                    client.model = name

        resumed_unevaluated = not (run_dir / "evals" / f"step-{start}.json").is_file()
        if every and start and start % every == 0 and start < cfg.train.steps and resumed_unevaluated:
            await evaluate_at(start)  # resumed from a checkpoint written before that step's evaluation ended
        loop = _loop(
            cfg, gate.hold_publishes(trainer) if every else trainer, ctx, target, run_dir, log=log,
            should_stop=lambda: stop["requested"], on_publish=on_publish, on_group=on_group,
        )  # fmt: skip
        try:
            async with anyio.create_task_group() as evaluations:
                result = await loop.run_leader(engine, prompts, start_step=start)
                if result.interrupted:  # Ctrl-C: the checkpoint is saved; an evaluation still running is dropped
                    evaluations.cancel_scope.cancel()
        except Exception as err:
            raise first_leaf(err) from None  # the loop's own error (or a failed evaluation), not the group wrapping it
        gate.raise_failure()
    if result.interrupted:
        typer.echo(f"interrupted: checkpoint saved under {run_dir / 'checkpoints'}; continue with --resume.")
    return result


def _finish_report(cfg: Any, run_dir: Path, state: _RunState, result: Any) -> None:
    from arpo_core.report import plot_training, render_report

    paths = {
        "metrics": run_dir / "metrics.jsonl",
        "checkpoints": run_dir / "checkpoints",
        "model": run_dir / "model",
        "config": run_dir / "config.toml",
    }
    try:
        paths["plot"] = plot_training(run_dir / "metrics.jsonl", run_dir / "training.png")
    except (ImportError, ValueError) as err:
        typer.echo(f"(no plot: {err})")
    (run_dir / "timings.json").write_text(json.dumps({**state.timings, "steps_done": result.steps_done}, indent=1))
    text = render_report(state.evals, paths=paths, timings=state.timings)
    text += f"\nRL steps done: {result.steps_done}; groups dropped as stale: {result.dropped_stale}\n"
    (run_dir / "report.md").write_text(text)
    typer.echo("\n" + text)


# ---------------------------------------------------------------------------------------------------- the command
@app.callback(invoke_without_command=True)
def train_command(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="A run config (TOML/YAML); default: the embedded default.")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any option: --set train.steps=50.")] = None,
    backend: Annotated[str | None, typer.Option(help="fsdp (PyTorch FSDP2) or deepspeed (ZeRO).")] = None,
    model: Annotated[
        str | None, typer.Option(help="A local Hugging Face folder, smollm2-135m-instruct or tiny.")
    ] = None,
    algo: Annotated[str, typer.Option(help="arpo (entropy-based branching) or grpo (N = M, no branching).")] = "arpo",
    steps: Annotated[int | None, typer.Option(help="RL steps.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Training prompts: .jsonl/.parquet or builtin:NAME.")] = None,
    rollout_url: Annotated[
        list[str] | None,
        typer.Option(help="A running vLLM-compatible server (repeatable); default: arpo starts its CPU server."),
    ] = None,
    served_model_name: Annotated[str | None, typer.Option(help="The model's name at --rollout-url.")] = None,
    weight_sync: Annotated[str | None, typer.Option(help="auto, cpu_server, vllm_lora, vllm_nccl or none.")] = None,
    sft: Annotated[bool | None, typer.Option("--sft/--no-sft", help="Run the SFT cold start first.")] = None,
    output_dir: Annotated[Path, typer.Option(help="The run folder.")] = Path("runs/train"),
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --output-dir from its newest checkpoint.")
    ] = False,
    tensorboard: Annotated[
        bool, typer.Option("--tensorboard", help="Also log to TensorBoard (OUTPUT/tensorboard).")
    ] = False,
    wandb: Annotated[str | None, typer.Option(help="Also log to Weights & Biases, in this project.")] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")] = False,
    nproc_per_node: NprocPerNode = 1,
    nnodes: Nnodes = 1,
    node_rank: NodeRank = 0,
    master_addr: MasterAddr = "127.0.0.1",
    master_port: MasterPort = None,
    launcher: Launcher = "torchrun",
) -> None:
    """Train a tool-using agent with ARPO; with no options, the embedded default that learns on a laptop CPU."""
    import os

    from arpo_backends.serve.threads import configure_openmp

    # Before torch loads (here and in the ranks launched below): the trainer shares the cores with the rollout
    # server and the tool sandboxes, and OpenMP threads that spin at every barrier slow both down several times.
    configure_openmp()

    from arpo_backends.cli.run_config import dump_toml, load_run_config
    from arpo_backends.train.dist import name_cpu_accelerator
    from arpo_backends.train.launch import LaunchOptions, maybe_relaunch
    from arpo_core.config import ConfigError
    from arpo_core.data.loaders import DatasetError

    name_cpu_accelerator()
    try:
        if algo not in ("arpo", "grpo"):
            raise ValueError(f"--algo {algo!r} is not one of: arpo, grpo.")
        flags: dict[str, Any] = {
            "trainer.backend": backend,
            "trainer.model": model,
            "train.steps": steps,
            "train.dataset": dataset,
            "inference.rollout_urls": list(rollout_url) if rollout_url else None,
            "inference.served_model_name": served_model_name,
            "inference.weight_sync": weight_sync,
            "sft.enabled": sft,
        }
        cfg = load_run_config(config, list(set_ or []), flags)
        if algo == "grpo":  # GRPO on the same machinery: every trajectory sampled from the prompt (N = M), and no
            # AEPO pre-monitoring, which would size N below M again
            grpo = {"algo.branching.global_samples": cfg.algo.branching.budget}
            grpo |= {"algo.branching.dynamic_global_samples": False, "algo.branching.dynamic_global_samples_min": 1}
            cfg = load_run_config(config, list(set_ or []), {**flags, **grpo})
        if print_config:
            typer.echo(dump_toml(cfg), nl=False)
            return
        options = LaunchOptions(nproc_per_node, nnodes, node_rank, master_addr, master_port, launcher)  # type: ignore[arg-type]
        first = "WORLD_SIZE" not in os.environ or os.environ.get("RANK", "0") == "0"
        inputs = _check_inputs(cfg)
    except (ConfigError, DatasetError, ValueError, ImportError, RuntimeError) as err:
        raise _fail(str(err)) from None
    run_dir = output_dir
    if first and "WORLD_SIZE" not in os.environ:
        checkpoints = run_dir / "checkpoints"
        if not resume and checkpoints.is_dir() and any(checkpoints.glob("step-*")):
            raise _fail(
                f"{run_dir} already holds a run with checkpoints; continue it with --resume, or pass another "
                "--output-dir."
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(dump_toml(cfg))
        source = config if config is not None else "the embedded default"
        typer.echo(f"arpo train · config from {source} (every option: {run_dir / 'config.toml'})")
        typer.echo(dump_toml(cfg))
    maybe_relaunch(options)
    try:
        run_train(cfg, inputs, run_dir, resume=resume, tensorboard=tensorboard, wandb=wandb)
    except (DatasetError, ValueError, ImportError, RuntimeError) as err:
        from arpo_backends.train import finish

        typer.echo(f"error: {err}", err=True)
        finish(1)
