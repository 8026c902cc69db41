"""A trainer rank for the distributed tests: ``python -m torch.distributed.run ... _worker.py SPEC.json``.

The spec names the backend, config overrides, the steps to run and where to write per-step metrics (JSONL, rank 0)
and a fingerprint of the final weights. Samples are generated from a seed, the same on every rank.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

from arpo_backends.batching import TrajectorySample
from arpo_backends.train import make_trainer
from arpo_backends.train.config import TrainerConfig
from arpo_backends.train.dist import finish, init_distributed
from arpo_core.runtime.trainer import WeightTarget


def make_samples(seed: int, groups: int = 4, per_group: int = 4, prompt_len: int = 6) -> list[TrajectorySample]:
    rng = np.random.default_rng(seed)
    out = []
    for g in range(groups):
        prompt = rng.integers(5, 200, size=prompt_len)
        for t in range(per_group):
            response = rng.integers(5, 200, size=int(rng.integers(3, 14)))
            ids = np.concatenate([prompt, response]).astype(np.int64)
            mask = np.zeros(len(ids), dtype=np.bool_)
            mask[prompt_len:] = True
            mask[prompt_len + 2 : prompt_len + 4] = False  # a "tool result" span inside the response
            adv = np.where(mask, rng.normal(), 0.0)
            behaviour = np.where(mask, rng.normal(-5.3, 0.3, size=len(ids)), np.nan)
            out.append(TrajectorySample(f"s{seed}-g{g}", t, ids, mask, adv, behaviour, prompt_len))
    return out


def main() -> None:
    # the deepspeed launcher adds --local_rank=N (LOCAL_RANK is in the environment too)
    args = [a for a in sys.argv[1:] if not a.startswith("--local_rank")]
    spec = json.loads(Path(args[0]).read_text())
    ctx = init_distributed()
    config = TrainerConfig.model_validate(spec["config"])
    trainer = make_trainer(config, ctx)
    out = Path(spec["out"])
    if spec.get("resume"):
        trainer.load(Path(spec["resume"]))
    kill = spec.get("kill")  # {"rank": r, "step": s, "where": "step" | "save"}: SIGKILL this rank there
    if kill and ctx.rank == kill["rank"] and kill["where"] == "save":
        save_shards = trainer.save_shards

        def dying_save(folder: Path) -> None:
            save_shards(folder)
            if trainer.global_step == kill["step"]:
                os.kill(os.getpid(), signal.SIGKILL)

        trainer.save_shards = dying_save  # type: ignore[method-assign]
    start = trainer.policy_version
    for step in range(start, spec["steps"]):
        if kill and ctx.rank == kill["rank"] and kill["where"] == "step" and step == kill["step"]:
            os.kill(os.getpid(), signal.SIGKILL)
        metrics = trainer.train_samples(make_samples(1000 + step, groups=spec.get("groups", 4)))
        if ctx.is_main:
            with (out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")
        if spec.get("publish"):
            target = WeightTarget(
                kind=spec["publish"]["kind"],
                urls=tuple(spec["publish"]["urls"]),
                directory=Path(spec["publish"]["directory"]),
            )
            lines = trainer.publish_weights(target)
            if ctx.is_main:
                with (out / "publish.jsonl").open("a") as f:
                    record = {"version": trainer.policy_version, "lines": list(lines)}
                    f.write(json.dumps({**record, "model_name": trainer.served_model_name}) + "\n")
        if spec.get("save_every") and (step + 1) % spec["save_every"] == 0:
            trainer.save(Path(spec["checkpoints"]))
    if spec.get("export"):
        trainer.export_hf(Path(spec["export"]))
    total = {}
    for name, tensor in trainer.full_state():
        if ctx.is_main:
            total[name] = float(tensor.double().sum())
    if ctx.is_main:
        (out / "weights.json").write_text(json.dumps(total))
    trainer.close()
    finish(0)


if __name__ == "__main__":
    main()
