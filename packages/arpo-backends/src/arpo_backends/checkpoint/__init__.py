"""Atomic, exactly-resumable checkpoint folders for distributed trainers (FSDP2/DCP and DeepSpeed).

Every rank writes into ``store.staging(step)``; after the trainer's barrier rank 0 calls ``store.commit(step)``,
which fsyncs everything, writes ``manifest.json`` and renames the folder to ``step-NNNNNN`` — the rename is the
commit point, so a crash or a SIGKILLed rank never leaves a checkpoint that looks complete. ``store.latest()`` and
``store.resolve("latest" | step | path)`` find the newest complete one to resume from. Next to the model and
optimizer, a checkpoint holds each rank's RNG state (``save_rng``/``load_rng``) and the ``TrainerState``.

Typical use in a trainer::

    store = CheckpointStore(output_dir / "checkpoints", keep_last=3)
    if rank == 0:
        store.recover()                      # before the first barrier: clears an interrupted save's leftovers
    ...
    folder = store.staging(step)             # every rank
    dcp.save(state_dict, checkpoint_id=folder / "model")   # or engine.save_checkpoint(folder)
    save_rng(folder, rank)
    if rank == 0:
        TrainerState(step, policy_version, samples_seen, data_position, world_size, "fsdp").save(folder)
    dist.barrier()
    if rank == 0:
        store.commit(step, {"backend": "fsdp", "world_size": world_size})
    dist.barrier()
"""

from __future__ import annotations

from arpo_backends.checkpoint._fs import fsync_paths
from arpo_backends.checkpoint.errors import CheckpointError, RngStateWarning
from arpo_backends.checkpoint.manifest import (
    DEFAULT_CHECKSUM_MAX_BYTES,
    MANIFEST_NAME,
    Manifest,
    ManifestFile,
    read_manifest,
    verify_checkpoint,
)
from arpo_backends.checkpoint.rng import capture_rng_state, load_rng, restore_rng_state, rng_file, save_rng
from arpo_backends.checkpoint.store import POINTER_NAME, CheckpointStore, step_name
from arpo_backends.checkpoint.trainer_state import TrainerState

__all__ = [
    "DEFAULT_CHECKSUM_MAX_BYTES",
    "MANIFEST_NAME",
    "POINTER_NAME",
    "CheckpointError",
    "CheckpointStore",
    "Manifest",
    "ManifestFile",
    "RngStateWarning",
    "TrainerState",
    "capture_rng_state",
    "fsync_paths",
    "load_rng",
    "read_manifest",
    "restore_rng_state",
    "rng_file",
    "save_rng",
    "step_name",
    "verify_checkpoint",
]
