"""Does RL here improve the agent beyond SFT, and is ARPO worth it over GRPO? ARPO vs GRPO vs SFT-only, ≥ 3 seeds.

    .venv/bin/python bench/learning.py                       # the study: 3 seeds × {ARPO, GRPO} × 30 steps
    .venv/bin/python bench/learning.py --ablation            # plus ARPO at N = M/4, M/2, 3M/4
    .venv/bin/python bench/learning.py --dry-run             # the commands, nothing run

Every run is the real ``arpo train --no-sft --model <SFT model>`` (a subprocess: arpo's CPU server, FSDP, the
embedded default's config on the bundled task ``builtin:default``), one per (method, seed), all from the same SFT
checkpoint with the same sampling budget M — ``--sft-model PATH``, or made once here by a 0-step ``arpo train``
(the SFT cold start of the embedded default) and reused. ARPO is ``--algo arpo`` (N < M: branches at uncertain
steps), GRPO ``--algo grpo`` (N = M); SFT-only is the step-0 evaluation of each run (the shared starting model).
Each run evaluates the whole held-out split greedily every ``--eval-every`` steps (``train.eval_every``) and at
the end; the bench reads the runs' ``metrics.jsonl`` and reports, per method, held-out accuracy, held-out mean
reward and tool calls per question, and the training rollouts' tool calls per trajectory and reward, each a mean
over seeds with a two-sided 95% Student-t interval (``bench/learning_stats.py``). It prints the issue's targets
as ratios of means (ARPO ÷ GRPO accuracy ≥ 1, ARPO ÷ GRPO tool calls per trajectory ≤ 0.6, both ÷ SFT-only > 1),
writes the markdown table (``--out``, with the command, commit, machine and date) and a PNG beside it (held-out
accuracy and tool calls against the step, a line per method, a band over seeds).

Runs live in ``--runs`` (default ``bench/runs/learning/``, git-ignored), one folder per (method, seed). Interrupt
the bench at any time (Ctrl-C lets the running ``arpo train`` finish its step and save a checkpoint) and rerun the
same command: finished runs are kept (their ``timings.json`` says all steps were done and the final evaluation is
in ``metrics.jsonl``), a run stopped mid-way continues with ``--resume``, one stopped before its first checkpoint
starts again. A folder made with other options is refused rather than mixed in. Once a run is finished its
checkpoints and published weights are deleted (1.7 + 1.3 GB each for SmolLM2; ``--keep-weights`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import learning_stats as stats  # beside this file (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
BUILTIN_MODELS = ("tiny", "smollm2-135m-instruct")


@dataclass(frozen=True)
class RunPlan:
    """One ``arpo train`` of the study."""

    name: str  # its folder under --runs
    method: str  # what it is aggregated under: arpo, grpo, or arpo-N<n> (the ablation)
    algo: str
    seed: int
    n_global: int  # N (global samples) it runs with
    sets: tuple[str, ...] = ()  # its own --set overrides (the ablation's N)


# ---------------------------------------------------------------------------------------------------- inputs
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (--set seed=S), ≥ 2; default 0 1 2")
    p.add_argument("--steps", type=int, default=30, help="RL steps per run (default 30)")
    p.add_argument("--eval-every", type=int, default=10, help="held-out evaluation every N steps (default 10)")
    p.add_argument("--methods", nargs="+", choices=("arpo", "grpo"), default=["arpo", "grpo"])
    p.add_argument("--ablation", action="store_true", help="also ARPO at N = M/4, M/2, 3M/4 (same seeds, steps)")
    p.add_argument("--sft-model", help="the SFT model every run starts from (default: made once here, then reused)")
    p.add_argument(
        "--base-model", default=None, help="the model the SFT cold start trains when --sft-model is not given "
        "(default: the embedded default's, SmolLM2-135M-Instruct)",
    )  # fmt: skip
    p.add_argument("--set", dest="sets", action="append", default=[], help="an arpo train override, repeatable")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "learning.md", help="the markdown table")
    p.add_argument("--runs", type=Path, default=REPO / "bench" / "runs" / "learning", help="where the runs live")
    p.add_argument("--keep-weights", action="store_true", help="keep each finished run's checkpoints and weights")
    p.add_argument("--dry-run", action="store_true", help="check the inputs, print the commands, run nothing")
    args = p.parse_args(argv)
    args.seeds = list(dict.fromkeys(args.seeds))
    args.methods = list(dict.fromkeys(args.methods))
    return args


def _fail(message: str) -> SystemExit:
    return SystemExit(f"error: {message}")


def resolve_config(args: argparse.Namespace) -> Any:
    """The config the RL runs get (the embedded default with the bench's and the user's overrides)."""
    from arpo_backends.cli.run_config import load_run_config
    from arpo_core.config import ConfigError

    try:
        return load_run_config(None, [*bench_sets(args), *args.sets], {"sft.enabled": False})
    except ConfigError as err:
        raise _fail(str(err)) from None


def held_out_size(cfg: Any) -> int:
    """How many held-out questions each evaluation scores (the same choice as ``arpo train``)."""
    from arpo_core.data import load_samples
    from arpo_core.data.builtin import builtin_samples
    from arpo_core.data.loaders import DatasetError

    spec = cfg.train.eval_dataset or (cfg.train.dataset if cfg.train.dataset.startswith("builtin:") else None)
    if spec is None:
        return 0
    try:
        if spec.startswith("builtin:"):
            return len(builtin_samples(spec, cfg.train.eval_size, split="test"))
        return len(load_samples(spec, limit=cfg.train.eval_size))
    except (DatasetError, ValueError, OSError) as err:
        raise _fail(str(err)) from None


def check_inputs(args: argparse.Namespace, cfg: Any) -> None:
    """Refuse, in one sentence, what cannot give the study's intervals — before any run starts."""
    if len(args.seeds) < 2:
        raise _fail("a 95% interval across seeds needs at least 2 seeds (the study uses 3): pass --seeds 0 1 2.")
    if args.steps < 1 or args.eval_every < 0:
        raise _fail(f"--steps {args.steps} and --eval-every {args.eval_every} must be ≥ 1 and ≥ 0.")
    n = held_out_size(cfg)
    source = cfg.train.eval_dataset or cfg.train.dataset
    if n == 0:
        raise _fail(
            f"the held-out split of {source} is empty, and the 95% intervals need at least {stats.MIN_HELD_OUT} "
            "questions: pass a held-out set with train.eval_dataset=FILE."
        )
    if n < stats.MIN_HELD_OUT:
        size = "" if cfg.train.eval_size is None else f" with train.eval_size={cfg.train.eval_size}"
        raise _fail(
            f"the held-out split of {source} gives {n} question(s){size}, fewer than the {stats.MIN_HELD_OUT} the "
            "95% intervals need: pass a larger held-out set (train.eval_dataset) or leave train.eval_size unset."
        )
    if args.sft_model and not (Path(args.sft_model).is_dir() or args.sft_model in BUILTIN_MODELS):
        raise _fail(f"--sft-model {args.sft_model} is not a folder; pass the SFT run's model folder (…/sft/model).")
    if args.ablation and cfg.algo.branching.budget < 4:
        raise _fail(f"the ablation needs M ≥ 4 to give N = M/4 ≥ 1 (M = {cfg.algo.branching.budget}).")


# ---------------------------------------------------------------------------------------------------- the plan
def bench_sets(args: argparse.Namespace) -> list[str]:
    """The bench's own overrides (the user's --set come after them and win): every held-out question, evaluations
    every --eval-every steps, a checkpoint every 10 steps and only the newest kept (resume needs no more)."""
    return [
        "train.eval_size=null", f"train.eval_every={args.eval_every}", "train.save_every=10",
        "train.keep_checkpoints=1",
    ]  # fmt: skip


def ablation_ns(budget: int) -> list[int]:
    """N = M/4, M/2, 3M/4 (rounded down), distinct and in 1 … M − 1."""
    return sorted({n for n in (budget // 4, budget // 2, 3 * budget // 4) if 1 <= n < budget})


def plan_runs(args: argparse.Namespace, cfg: Any) -> list[RunPlan]:
    budget, default_n = cfg.algo.branching.budget, cfg.algo.branching.global_samples
    plans = [  # seed by seed, so that a study stopped early has every method at its first seeds
        RunPlan(f"{m}-seed{s}", m, m, s, default_n if m == "arpo" else budget) for s in args.seeds for m in args.methods
    ]
    if args.ablation:
        for n in ablation_ns(budget):
            if n == default_n and "arpo" in args.methods:
                continue  # the ARPO runs are this point of the sweep
            sets = (f"algo.branching.global_samples={n}",)
            plans += [RunPlan(f"arpo-N{n}-seed{s}", f"arpo-N{n}", "arpo", s, n, sets) for s in args.seeds]
    head = len(args.methods) * len(args.seeds)
    return plans[:head] + sorted(plans[head:], key=lambda p: (p.seed, p.n_global))


def python_cmd() -> list[str]:
    return [sys.executable, "-m", "arpo_core.cli", "train"]


def sft_dir(args: argparse.Namespace) -> Path:
    return Path(args.runs) / "sft"


def sft_command(args: argparse.Namespace) -> list[str]:
    """A 0-step ``arpo train``: the embedded default's SFT cold start, its model left in ``sft/model``."""
    model = ["--model", args.base_model] if args.base_model else []
    sets = [*args.sets, "train.eval_size=1", "train.save_every=0"]  # its evaluations only slow it down
    return [
        *python_cmd(), "--steps", "0", *model, "--output-dir", str(sft_dir(args)),
        *(a for s in sets for a in ("--set", s)),
    ]  # fmt: skip


def run_command(args: argparse.Namespace, plan: RunPlan, sft_model: str) -> list[str]:
    sets = [*bench_sets(args), *args.sets, f"seed={plan.seed}", *plan.sets]
    return [
        *python_cmd(), "--no-sft", "--model", sft_model, "--algo", plan.algo, "--steps", str(args.steps),
        "--output-dir", str(args.runs / plan.name), *(a for s in sets for a in ("--set", s)),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------- running
def read_rows(run: Path) -> list[dict[str, Any]]:
    from arpo_core.report.metrics import read_metrics

    path = run / "metrics.jsonl"
    return [dict(r) for r in read_metrics(path)] if path.is_file() else []


def _timings(run: Path) -> dict[str, float]:
    path = run / "timings.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def run_state(run: Path, cmd: Sequence[str], steps: int) -> str:
    """``done``, ``resume`` (checkpoints of an unfinished run) or ``fresh``; refuses a folder of other options."""
    if not run.exists():
        return "fresh"
    recorded = run / "bench-command.json"
    if not recorded.is_file() or json.loads(recorded.read_text()) != list(cmd[len(python_cmd()) :]):
        raise _fail(
            f"{run} holds a run made with other options (see its bench-command.json); delete it or pass another --runs."
        )
    finished = _timings(run).get("steps_done") == steps
    if finished and steps in stats.latest_by_step(read_rows(run), "eval"):
        return "done"
    checkpoints = run / "checkpoints"
    return "resume" if checkpoints.is_dir() and any(checkpoints.glob("step-*")) else "fresh"


def execute(cmd: list[str], run: Path, label: str, steps: int) -> None:
    """Run one ``arpo train`` (output in ``run/bench.log``), printing its progress; Ctrl-C waits for its save."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "bench-command.json").write_text(json.dumps([a for a in cmd[len(python_cmd()) :] if a != "--resume"]))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    began = time.monotonic()
    with (run / "bench.log").open("a") as log:
        log.write(f"\n$ {shlex.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            seen = -1
            while True:
                try:
                    rc = proc.wait(timeout=30)
                    break
                except subprocess.TimeoutExpired:
                    train = stats.latest_by_step(read_rows(run), "train")
                    if train and max(train) != seen:
                        seen = max(train)
                        r = train[seen]
                        print(
                            f"  {label}: step {seen + 1}/{steps}, reward {r['reward_mean']:+.3f}, "
                            f"tool calls/traj {r['tool_calls_per_trajectory']:.2f} ({_elapsed(began)})",
                            flush=True,
                        )
        except KeyboardInterrupt:  # the child got the same SIGINT: it finishes its step and saves a checkpoint
            print(f"\ninterrupted: waiting for {label} to save its checkpoint …", flush=True)
            proc.wait()
            raise SystemExit("interrupted: rerun the same command to resume (finished runs are kept).") from None
    if rc == 130:  # arpo train stopped on SIGINT after saving a checkpoint
        raise SystemExit(f"interrupted: {label} saved a checkpoint; rerun the same command to resume.")
    if rc != 0:
        tail = "".join((run / "bench.log").read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"{tail}\nerror: {label} failed (exit {rc}); log: {run / 'bench.log'}; rerun to resume.")


def _elapsed(began: float) -> str:
    from arpo_core.report import format_seconds

    return format_seconds(time.monotonic() - began)


def prune(run: Path) -> None:
    """A finished run keeps its record (metrics, evaluations, report, final model), not its resume state."""
    for name in ("checkpoints", "weights"):
        shutil.rmtree(run / name, ignore_errors=True)


def ensure_sft(args: argparse.Namespace) -> str:
    """The SFT model every run starts from: given, or made by a 0-step ``arpo train`` (kept once finished)."""
    if args.sft_model:
        return str(args.sft_model)
    run, model = sft_dir(args), sft_dir(args) / "sft" / "model"
    if _timings(run) and (model / "config.json").is_file():
        print(f"SFT model: {model} (made earlier)")
        return str(model)
    shutil.rmtree(run, ignore_errors=True)  # an SFT stage stopped mid-way cannot be resumed: start it again
    print(f"SFT cold start (a 0-step arpo train) into {run} …", flush=True)
    cmd = sft_command(args)
    execute(cmd, run, "SFT", 0)
    if not args.keep_weights:
        prune(run)
        shutil.rmtree(run / "model", ignore_errors=True)  # the same weights as sft/model
    return str(model)


# ---------------------------------------------------------------------------------------------------- results
def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or cpu
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = (
        " · load average {:.1f} {:.1f} {:.1f} at the start".format(*os.getloadavg())
        if hasattr(os, "getloadavg")
        else ""
    )
    return f"nproc {nproc} · {cpu} · {platform.system()} {platform.release()}{load}"


def commit() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return head + (" (with uncommitted changes in the working tree)" if dirty else "")


def summaries(args: argparse.Namespace, plans: Sequence[RunPlan]) -> list[stats.RunSummary]:
    out = []
    for plan in plans:
        summary = stats.summarize_run(plan.method, plan.seed, read_rows(args.runs / plan.name))
        if summary.steps_done != args.steps:
            raise _fail(f"{plan.name} did {summary.steps_done} of {args.steps} steps; rerun to finish it.")
        out.append(summary)
    return out


def plot(curves: Mapping[str, Mapping[str, Sequence[tuple[int, stats.Interval]]]], floor: float, png: Path) -> Path:
    """Held-out accuracy, train tool calls per trajectory and held-out tool calls per question against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = (
        ("heldout_accuracy", "held-out accuracy (%)", 100.0),
        ("train_tool_calls", "tool calls / trajectory\n(training rollouts)", 1.0),
        ("heldout_tool_calls", "tool calls / question\n(held-out, greedy)", 1.0),
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 9), sharex=True)
    for ax, (key, title, scale) in zip(axes, panels, strict=True):
        for i, (method, by_key) in enumerate(curves.items()):
            points = by_key[key]
            steps = [s for s, _ in points]
            means = [iv.mean * scale for _, iv in points]
            marker = "o" if key.startswith("heldout") else None
            color = f"C{i % 10}"
            ax.plot(steps, means, marker=marker, ms=4, color=color, label=stats.METHOD_NAMES.get(method, method))
            band = [(s, iv) for s, iv in points if not math.isnan(iv.half_width)]
            if band:
                ax.fill_between(
                    [s for s, _ in band], [iv.low * scale for _, iv in band], [iv.high * scale for _, iv in band],
                    color=color, alpha=0.18, linewidth=0,
                )  # fmt: skip
        if key == "heldout_accuracy":
            ax.axhline(floor * 100, color="grey", ls="--", lw=1, label="SFT-only")
        ax.set_ylabel(title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[-1].set_xlabel(
        "RL step: the policy after that many updates (held-out: its evaluation; training: its rollouts)"
    )
    n = max((iv.n for c in curves.values() for _, iv in c["heldout_accuracy"]), default=0)
    fig.suptitle(f"mean over {n} seeds, band: 95% t-interval over seeds")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def report(
    args: argparse.Namespace, cfg: Any, plans: Sequence[RunPlan], runs: Sequence[stats.RunSummary], command: str
) -> tuple[str, list[str]]:
    """The markdown file's text and the target lines printed at the end."""
    budget, default_n = cfg.algo.branching.budget, cfg.algo.branching.global_samples
    main = [r for r in runs if r.method in args.methods]
    agg = stats.aggregate(main)
    floor = stats.sft_floor(main or runs)
    target_lines = [t.line() for t in stats.targets(agg, floor)]
    keys = ("heldout_accuracy", "train_tool_calls", "heldout_tool_calls")
    curves = {m: {k: stats.curve([r for r in main if r.method == m], k) for k in keys} for m in args.methods}
    png = plot(curves, floor["heldout_accuracy"].mean, args.out.with_suffix(".png"))
    wall = sum(_timings(args.runs / p.name).get("total", 0.0) for p in plans)
    from arpo_core.report import format_seconds

    questions = sorted({r.questions for r in runs})
    during = {0: "not during RL", 1: "after every step"}.get(args.eval_every, f"every {args.eval_every} steps")
    if not args.sft_model:
        wall += _timings(sft_dir(args)).get("total", 0.0)
    lines = [
        f"# ARPO vs GRPO vs SFT-only on `{cfg.train.dataset}` ({len(args.seeds)} seeds, {args.steps} RL steps)",
        "",
        f"- command: `{command}`",
        f"- commit: {commit()}",
        f"- machine: {machine()}",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- runs: `arpo train --no-sft --model {args.sft_model or sft_dir(args) / 'sft' / 'model'}` from the same SFT "
        f"checkpoint, M = {budget} trajectories per prompt for both (ARPO: N = {default_n} sampled from the prompt, "
        f"{budget - default_n} slots for branches; GRPO: N = M), {cfg.train.groups_per_step} groups per step, "
        f"mode {cfg.train.mode}, seeds {' '.join(map(str, args.seeds))}; folders under `{_rel(args.runs)}/`",
        f"- held-out: {', '.join(map(str, questions))} questions, greedy, before RL (= SFT-only), {during} and "
        f"after the last step; training figures are means over every step's rollouts (temperature "
        f"{cfg.rollout.temperature})",
        "- intervals: mean over seeds ± two-sided 95% Student-t half-width, t(0.975, n−1)·s/√n, n = seeds",
        f"- wall time: {format_seconds(wall)} in all (the sum of the runs' `timings.json` totals, the SFT run's "
        "included when made here; a resumed run counts its last leg only)",
        "",
        f"## After {args.steps} RL steps",
        "",
        *stats.results_table(agg, floor),
        "",
        "Targets (ratios of the means above):",
        "",
        *(f"- {t}" for t in target_lines),
        "",
        "## Held-out accuracy by step",
        "",
        *stats.by_step_table({m: c["heldout_accuracy"] for m, c in curves.items()}),
        "",
        f"![held-out accuracy and tool calls by step]({png.name})",
    ]
    if args.ablation:
        by_n: dict[int, dict[str, stats.Interval]] = {}
        for n in ablation_ns(budget):
            method = "arpo" if n == default_n and "arpo" in args.methods else f"arpo-N{n}"
            by_n[n] = stats.aggregate([r for r in runs if r.method == method])[method]
        lines += [
            "",
            "## Branch budget: ARPO at N = M/4, M/2, 3M/4 (paper's best: M/2)",
            "",
            *stats.ablation_table(by_n, budget),
        ]
    lines += ["", "| run | steps | wall time | seed |", "|:--|--:|--:|--:|"]
    for plan, run in zip(plans, runs, strict=True):
        total = _timings(args.runs / plan.name).get("total", math.nan)
        lines.append(f"| `{plan.name}` | {run.steps_done} | {format_seconds(total)} | {plan.seed} |")
    return "\n".join(lines) + "\n", target_lines


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/learning.py", *argv])
    cfg = resolve_config(args)
    check_inputs(args, cfg)
    plans = plan_runs(args, cfg)
    sft_model = args.sft_model or str(sft_dir(args) / "sft" / "model")
    print(
        f"{len(plans)} runs × {args.steps} steps from {sft_model}; {held_out_size(cfg)} held-out questions; "
        f"M = {cfg.algo.branching.budget}; runs in {args.runs}",
        flush=True,
    )
    if args.dry_run:
        if not args.sft_model:
            print(f"[SFT] {shlex.join(sft_command(args))}")
        for plan in plans:
            cmd = run_command(args, plan, sft_model)
            state = run_state(args.runs / plan.name, cmd, args.steps)
            print(f"[{plan.name}: {state}] {shlex.join([*cmd, '--resume'] if state == 'resume' else cmd)}")
        return
    states = {p.name: run_state(args.runs / p.name, run_command(args, p, sft_model), args.steps) for p in plans}
    sft_model = ensure_sft(args)
    for i, plan in enumerate(plans, 1):
        run = args.runs / plan.name
        cmd = run_command(args, plan, sft_model)
        state = states[plan.name]
        label = f"[{i}/{len(plans)}] {plan.name}"
        if state == "done":
            print(f"{label}: finished earlier, kept")
        else:
            if state == "fresh":
                shutil.rmtree(run, ignore_errors=True)  # a start that never reached a checkpoint
            print(f"{label}: {'resuming' if state == 'resume' else 'starting'} …", flush=True)
            began = time.monotonic()
            execute([*cmd, "--resume"] if state == "resume" else cmd, run, label, args.steps)
            print(f"{label}: done in {_elapsed(began)}", flush=True)
        if not args.keep_weights:
            prune(run)
    text, target_lines = report(args, cfg, plans, summaries(args, plans), command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print("\n" + text)
    print("targets:\n  " + "\n  ".join(target_lines))
    print(f"\nwritten: {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
