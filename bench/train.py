"""`arpo train` on this CPU: (a) the asynchronous loop against the synchronous one on the same work, (b) training
tokens/s of each backend against TRL's GRPOTrainer (``bench/train_tokens.py``), (c) ARPO against GRPO at equal M.

    .venv/bin/python bench/train.py [--model runs/default/sft/model] [--steps 6] [--skip-tokens]

(a) and (c) run the real command (``arpo train --no-sft``, arpo's CPU server, FSDP, the bundled task) from the
same starting model — by default the SFT cold-start model of an earlier ``arpo train`` run (``make demo`` leaves
it in ``runs/default/sft/model``), else SmolLM2-135M-Instruct — and read the runs' ``metrics.jsonl``:

* (a) RL wall time (rollouts + training + publishing, evaluations excluded) of ``train.mode=async`` vs ``sync``,
  same steps, groups and seed; the ratio is sync ÷ async (> 1: the overlap pays);
* (c) tool calls per step and mean reward over the same steps for ``--algo arpo`` (N < M: branching at uncertain
  steps) and ``--algo grpo`` (N = M); the paper reports about half the tool calls for ARPO. A PNG overlays both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import mean

REPO = Path(__file__).resolve().parents[1]


def _run(name: str, out: Path, model: str, steps: int, extra: list[str]) -> Path:
    run = out / name
    cmd = [
        sys.executable, "-m", "arpo_core.cli", "train", "--no-sft", "--model", model, "--steps", str(steps),
        "--output-dir", str(run), "--set", "train.eval_size=1", "--set", "train.save_every=0", *extra,
    ]  # fmt: skip
    print(f"[{name}] {' '.join(cmd[3:])}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return run


def _train_rows(run: Path) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("phase") == "train"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_model = REPO / "runs" / "default" / "sft" / "model"
    parser.add_argument("--model", default=str(default_model) if default_model.is_dir() else "smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--skip-tokens", action="store_true", help="skip (b), the TRL comparison")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="arpo-bench-train-"))
    print(f"model: {args.model}; {args.steps} RL steps per run; runs in {out}\n")

    arpo_async = _run("arpo-async", out, args.model, args.steps, ["--set", "train.mode=async"])
    arpo_sync = _run("arpo-sync", out, args.model, args.steps, ["--set", "train.mode=sync"])
    grpo = _run("grpo-async", out, args.model, args.steps, ["--algo", "grpo", "--set", "train.mode=async"])

    t_async = json.loads((arpo_async / "timings.json").read_text())["rl"]
    t_sync = json.loads((arpo_sync / "timings.json").read_text())["rl"]
    print("\n(a) asynchronous vs synchronous loop, same steps and groups (RL phase wall time)")
    print("| loop | RL seconds | seconds/step |\n|---|---:|---:|")
    print(
        f"| sync | {t_sync:.1f} | {t_sync / args.steps:.1f} |\n| async | {t_async:.1f} | {t_async / args.steps:.1f} |"
    )
    print(f"sync ÷ async = {t_sync / t_async:.2f}×")

    rows = {"ARPO": _train_rows(arpo_async), "GRPO": _train_rows(grpo)}
    print("\n(c) ARPO vs GRPO at equal M, same steps (means over steps)")
    print("| algo | tool calls / step | tool calls / trajectory | reward | accuracy |\n|---|---:|---:|---:|---:|")
    for name, rs in rows.items():
        calls = mean(r["tool_calls_per_trajectory"] * r["trajectories"] for r in rs)
        print(
            f"| {name} | {calls:.1f} | {mean(r['tool_calls_per_trajectory'] for r in rs):.2f} | "
            f"{mean(r['reward_mean'] for r in rs):+.3f} | {mean(r['accuracy'] for r in rs):.3f} |"
        )
    a = mean(r["tool_calls_per_trajectory"] * r["trajectories"] for r in rows["ARPO"])
    g = mean(r["tool_calls_per_trajectory"] * r["trajectories"] for r in rows["GRPO"])
    print(f"ARPO ÷ GRPO tool calls per step = {a / g:.2f} (paper: about 0.5)")
    try:
        from arpo_core.report import plot_runs

        png = plot_runs(
            {"ARPO": arpo_async / "metrics.jsonl", "GRPO": grpo / "metrics.jsonl"}, out / "arpo_vs_grpo.png"
        )
        print(f"plot: {png}")
    except (ImportError, ValueError) as err:
        print(f"(no plot: {err})")

    if not args.skip_tokens:
        print("\n(b) training tokens/s: arpo's backends vs TRL GRPOTrainer (bench/train_tokens.py)", flush=True)
        tokens = [sys.executable, str(REPO / "bench" / "train_tokens.py"), "--trl-optimizer", "default", "--steps", "5"]
        subprocess.run(tokens, check=False)


if __name__ == "__main__":
    main()
