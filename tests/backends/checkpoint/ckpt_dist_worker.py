"""One rank of the 2-process gloo test (run as a script by test_checkpoint_distributed.py, not collected).

Every rank writes its DCP shard, a private file and its RNG state into ``staging(step)``; barrier; rank 0 commits;
barrier; every rank resolves the latest checkpoint, loads the DCP state and its RNG state back, and writes what it
saw to ``result-rank{r}.json``. Ends with a barrier, ``destroy_process_group`` and ``os._exit(0)`` (gloo may abort at
interpreter exit after success).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

from arpo_backends.checkpoint import CheckpointStore, TrainerState, fsync_paths, load_rng, read_manifest, save_rng


def main() -> None:
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    store = CheckpointStore(root, keep_last=1)
    if rank == 0:
        store.recover()
    dist.barrier()
    steps: dict[str, dict[str, object]] = {}
    for step in (1, 2):
        torch.manual_seed(1000 * step + rank)
        state = {"shared": torch.arange(6.0) * step, f"rank{rank}": torch.full((3,), float(10 * step + rank))}
        folder = store.staging(step)
        dcp_save(state, checkpoint_id=folder / "model")
        own = folder / f"extra-rank{rank}.bin"
        own.write_bytes(bytes([rank]) * (100 + rank))
        rng = save_rng(folder, rank)
        fsync_paths([own, rng])
        if rank == 0:
            TrainerState(step, step, 8 * step, {"index": 8 * step}, world, "fsdp").save(folder)
        after_save = torch.rand(4).tolist()
        dist.barrier()
        if rank == 0:
            store.commit(step, {"world_size": world, "backend": "fsdp"})
        dist.barrier()

        resolved = store.resolve("latest")
        loaded = {"shared": torch.zeros(6), f"rank{rank}": torch.zeros(3)}
        dcp_load(loaded, checkpoint_id=resolved / "model")
        torch.manual_seed(12345)
        restored = load_rng(resolved, rank)
        steps[str(step)] = {
            "resolved": resolved.name,
            "files": sorted(f.path for f in read_manifest(resolved).files),
            "dcp_ok": all(torch.equal(loaded[k], v) for k, v in state.items()),
            "rng_ok": restored and torch.rand(4).tolist() == after_save,
            "trainer_step": TrainerState.load(resolved).step,
        }
        dist.barrier()
    result = {"rank": rank, "world": world, "steps": steps, "on_disk": sorted(p.name for p in root.iterdir())}
    out.joinpath(f"result-rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
