"""CheckpointStore: commit, latest, pruning by hand, damage fallback, re-save, recover and --resume resolution."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from ckpt_helpers import payload, read_tree, save_step, write_files

from arpo_backends.checkpoint import (
    MANIFEST_NAME,
    CheckpointError,
    CheckpointStore,
    read_manifest,
    verify_checkpoint,
)


def steps_on_disk(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


# --------------------------------------------------------------------------- commit and latest
def test_commit_then_latest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ckpt")
    assert store.latest() is None
    staging = store.staging(12)
    assert staging == tmp_path / "ckpt" / ".staging-step-000012"
    assert store.staging(12) == staging  # idempotent, any rank may call it
    write_files(staging, payload(12))
    final = store.commit(12, {"policy_version": 3})
    assert final == tmp_path / "ckpt" / "step-000012"
    assert not staging.exists()
    assert store.latest() == final
    assert (tmp_path / "ckpt" / "latest").read_text() == "step-000012\n"
    assert read_tree(final) == payload(12)
    manifest = read_manifest(final)
    assert manifest.step == 12
    assert manifest.extra == {"policy_version": 3}
    assert {f.path for f in manifest.files} == set(payload(12))
    assert {f.path: f.size for f in manifest.files} == {k: len(v) for k, v in payload(12).items()}
    raw = json.loads((final / MANIFEST_NAME).read_text())
    assert raw["format"] == "arpo-checkpoint" and raw["version"] == 1 and raw["total_bytes"] == manifest.total_bytes


def test_checksums_only_for_files_up_to_the_threshold(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, checksum_max_bytes=1000)
    final = save_step(store, 1, size=4096)
    digests = {f.path: f.blake2b for f in read_manifest(final).files}
    assert digests["model/__0_0.distcp"] is None  # 4096 bytes > 1000: size only
    assert digests["model/.metadata"] is not None and len(digests["model/.metadata"]) == 32
    # A small file whose bytes change at the same size is caught by its digest ...
    meta = final / "model" / ".metadata"
    meta.write_bytes(bytes(len(meta.read_bytes())))
    with pytest.raises(CheckpointError, match=r"\.metadata has the right size but its blake2b digest differs"):
        store.verify(final)


def test_keep_last_pruning_by_hand(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep_last=2)
    for step in range(1, 6):
        save_step(store, step)
    # keep 2 of steps 1..5 → {4, 5}
    assert steps_on_disk(tmp_path) == ["latest", "step-000004", "step-000005"]
    assert [p.name for p in store.list_complete()] == ["step-000004", "step-000005"]


def test_keep_last_none_keeps_all_and_one_keeps_only_the_new(tmp_path: Path) -> None:
    every = CheckpointStore(tmp_path / "all", keep_last=None)
    one = CheckpointStore(tmp_path / "one", keep_last=1)
    for step in (3, 6, 9):
        save_step(every, step)
        save_step(one, step)
    assert [p.name for p in every.list_complete()] == ["step-000003", "step-000006", "step-000009"]
    assert [p.name for p in one.list_complete()] == ["step-000009"]
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointStore(tmp_path, keep_last=0)


def test_pruning_removes_earlier_staging_but_keeps_later_ones(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep_last=3)
    write_files(store.staging(2), payload(2))  # interrupted save of an earlier step
    write_files(store.staging(9), payload(9))  # a later step (e.g. being written asynchronously)
    save_step(store, 5)
    assert steps_on_disk(tmp_path) == [".staging-step-000009", "latest", "step-000005"]


def test_later_checkpoints_of_an_abandoned_run_are_kept_and_the_new_one_is_latest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep_last=2)
    for step in (1, 2, 3, 4):
        save_step(store, step, tag="first")
    time.sleep(0.01)
    save_step(store, 2, tag="second")  # resumed from step 2 → saved step 2 again
    assert store.latest() == tmp_path / "step-000002"
    assert read_tree(tmp_path / "step-000002") == payload(2, "second")
    # the first run kept {3, 4}; the re-save of step 2 prunes only earlier steps, so 3 and 4 (abandoned) stay
    assert [p.name for p in store.list_complete()] == ["step-000002", "step-000003", "step-000004"]


# --------------------------------------------------------------------------- staging is never a checkpoint
def test_staging_with_files_but_no_commit_is_never_latest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    write_files(store.staging(3), payload(3))
    assert store.latest() is None
    assert store.list_complete() == []
    save_step(store, 1)
    write_files(store.staging(7), payload(7))
    # even with a manifest in it (a commit killed just before the rename), staging is not complete
    (store.staging_path(7) / MANIFEST_NAME).write_text(json.dumps({"format": "arpo-checkpoint"}))
    assert store.latest() == tmp_path / "step-000001"
    assert store.list_complete() == [tmp_path / "step-000001"]


def test_commit_without_staging_or_with_bad_extra_says_what_to_do(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    with pytest.raises(CheckpointError, match=r"no staging folder .* call staging\(4\)"):
        store.commit(4)
    store.staging(4)
    with pytest.raises(CheckpointError, match="is empty, so there is nothing to commit"):
        store.commit(4)
    write_files(store.staging(4), payload(4))
    with pytest.raises(CheckpointError, match="not JSON serialisable"):
        store.commit(4, {"bad": object()})
    assert store.staging_path(4).is_dir()  # nothing was renamed
    store.commit(4)
    with pytest.raises(CheckpointError, match="already committed"):
        store.commit(4)


# --------------------------------------------------------------------------- damage and fallback
@pytest.fixture
def three_steps(tmp_path: Path) -> CheckpointStore:
    store = CheckpointStore(tmp_path, keep_last=None)
    for step in (1, 2, 3):
        save_step(store, step)
    return store


def test_truncated_file_falls_back_and_verify_names_it(three_steps: CheckpointStore) -> None:
    newest = three_steps.root / "step-000003"
    shard = newest / "model" / "__1_0.distcp"
    with open(shard, "r+b") as handle:
        handle.truncate(100)
    assert three_steps.latest() == three_steps.root / "step-000002"
    with pytest.raises(CheckpointError) as info:
        three_steps.verify(newest)
    message = str(info.value)
    assert str(shard) in message and "short" in message and "100 bytes" in message and "4096" in message
    assert "resume from an earlier checkpoint" in message
    assert message.count(". ") == 0  # one sentence


def test_missing_file_is_named(three_steps: CheckpointStore) -> None:
    newest = three_steps.root / "step-000003"
    (newest / "optim.pt").unlink()
    with pytest.raises(CheckpointError, match=r"optim\.pt is missing \(the manifest lists it with 2048 bytes\)"):
        verify_checkpoint(newest)
    assert three_steps.latest() == three_steps.root / "step-000002"


def test_pointer_to_deleted_folder_falls_back(three_steps: CheckpointStore) -> None:
    import shutil

    shutil.rmtree(three_steps.root / "step-000003")
    assert three_steps.pointer_path.read_text().strip() == "step-000003"
    assert three_steps.latest() == three_steps.root / "step-000002"


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x00garbage", b"", b"step-\n", b"../../etc\n", b"step-000099\n"])
def test_garbage_pointer_falls_back_to_scan(three_steps: CheckpointStore, garbage: bytes) -> None:
    three_steps.pointer_path.write_bytes(garbage)
    assert three_steps.latest() == three_steps.root / "step-000003"


def test_pointer_to_older_step_while_a_newer_commit_exists(three_steps: CheckpointStore) -> None:
    # a crash between the rename (commit point) and the pointer update: step 3 is complete and newer
    three_steps.pointer_path.write_text("step-000002\n")
    assert three_steps.latest() == three_steps.root / "step-000003"


def test_missing_or_garbled_manifest(three_steps: CheckpointStore) -> None:
    newest = three_steps.root / "step-000003"
    raw = json.loads((newest / MANIFEST_NAME).read_text())
    raw["files"][0]["path"] = "../step-000002/optim.pt"
    (newest / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"is not a valid checkpoint manifest \(bad file entry '\.\./step"):
        three_steps.verify(newest)
    (newest / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        three_steps.verify(newest)
    (newest / MANIFEST_NAME).unlink()
    with pytest.raises(CheckpointError, match=r"has no manifest\.json, so its save never finished"):
        three_steps.verify(newest)
    assert three_steps.latest() == three_steps.root / "step-000002"


def test_every_checkpoint_damaged_gives_none(three_steps: CheckpointStore) -> None:
    for path in three_steps.list_complete():
        (path / "optim.pt").unlink()
    assert three_steps.latest() is None


# --------------------------------------------------------------------------- re-save of the same step
def test_resaving_a_step_replaces_it_and_leaves_one_folder(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep_last=3)
    save_step(store, 1, tag="a")
    save_step(store, 2, tag="a")
    write_files(store.staging(2), payload(2, "b"))
    (store.staging_path(2) / "extra.bin").write_bytes(b"new file")
    final = store.commit(2)
    assert steps_on_disk(tmp_path) == ["latest", "step-000001", "step-000002"]
    assert read_tree(final) == {**payload(2, "b"), "extra.bin": b"new file"}
    assert store.latest() == final


def test_a_displaced_checkpoint_stands_in_and_recover_puts_it_back(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    save_step(store, 1)
    save_step(store, 2, tag="old")
    write_files(store.staging(2), payload(2, "new"))
    # the state a crash between the two renames of a re-save leaves behind
    os.rename(tmp_path / "step-000002", tmp_path / ".replaced-step-000002")
    found = store.latest()
    assert found == tmp_path / ".replaced-step-000002"
    assert read_tree(found) == payload(2, "old")
    assert store.resolve("2") == found
    touched = store.recover()
    assert {p.name for p in touched} == {".replaced-step-000002", ".staging-step-000002"}
    assert steps_on_disk(tmp_path) == ["latest", "step-000001", "step-000002"]
    assert read_tree(store.latest() or tmp_path) == payload(2, "old")


def test_recover_clears_staging_and_leftovers(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    save_step(store, 1)
    write_files(store.staging(2), payload(2))
    (tmp_path / ".deleting-step-000000-abcd").mkdir()
    (tmp_path / ".latest.arpo-tmp-1-ab").write_text("step-000002\n")
    store.recover()
    assert steps_on_disk(tmp_path) == ["latest", "step-000001"]
    assert store.recover() == []


# --------------------------------------------------------------------------- resolve (--resume)
def test_resolve_latest_step_and_path(three_steps: CheckpointStore) -> None:
    root = three_steps.root
    assert three_steps.resolve("latest") == root / "step-000003"
    assert three_steps.resolve(" LATEST ") == root / "step-000003"
    assert three_steps.resolve("2") == root / "step-000002"
    assert three_steps.resolve(1) == root / "step-000001"
    assert three_steps.resolve(root / "step-000002") == root / "step-000002"
    assert three_steps.resolve(str(root / "step-000001")) == root / "step-000001"
    # a store's root folder resolves to its latest checkpoint
    assert CheckpointStore(root.parent / "elsewhere").resolve(root) == root / "step-000003"


def test_resolve_errors_are_one_sentence(three_steps: CheckpointStore, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        three_steps.resolve("7")
    assert str(info.value) == (
        f"no checkpoint of step 7 under {three_steps.root}; the complete ones are steps 1, 2, 3: pass one of those "
        "or 'latest'."
    )
    write_files(three_steps.staging(7), payload(7))
    with pytest.raises(CheckpointError, match=r"the save of step 7 .* was interrupted \(only \.staging-step-000007"):
        three_steps.resolve(7)
    with pytest.raises(CheckpointError, match=r"is the staging folder of a save that was never committed"):
        three_steps.resolve(three_steps.staging_path(7))
    with pytest.raises(CheckpointError, match="does not exist; pass 'latest', a step number or a checkpoint folder"):
        three_steps.resolve(tmp_path / "nope")
    (three_steps.root / "step-000002" / "optim.pt").unlink()
    with pytest.raises(CheckpointError, match=r"the checkpoint of step 2 is damaged \(.*optim\.pt is missing"):
        three_steps.resolve("2")
    with pytest.raises(CheckpointError, match=r"optim\.pt is missing"):
        three_steps.resolve(three_steps.root / "step-000002")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(CheckpointError, match="is not a checkpoint folder"):
        three_steps.resolve(plain)


def test_resolve_latest_with_only_incomplete_folders(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ckpt")
    with pytest.raises(CheckpointError) as info:
        store.resolve("latest")
    assert str(info.value) == (
        f"no checkpoint under {tmp_path / 'ckpt'} (the folder does not exist): start without --resume or point "
        "--resume to the folder the checkpoints were saved in."
    )
    save_step(store, 10)
    (store.root / "step-000010" / "optim.pt").unlink()
    write_files(store.staging(12), payload(12))
    with pytest.raises(CheckpointError) as info:
        store.resolve("latest")
    assert str(info.value) == (
        f"no complete checkpoint under {store.root}; the folders found (.staging-step-000012, step-000010) are "
        "incomplete (a save was interrupted) or damaged: start without --resume or point --resume to a complete "
        "checkpoint folder."
    )
