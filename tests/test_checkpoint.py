"""Checkpoint files under fault: bad input files, a full disk, leftovers of killed writers.

Unit level (in this process, no training run): every bad file must give one
``CheckpointError`` line that names the file and the problem, run nothing from
the file and leave it byte-for-byte as it was. The process-level faults
(kill -9, signals, disk full during training) are in ``test_faults.py``.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import pickle
import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pongxp import checkpoint, cli
from pongxp.checkpoint import CheckpointError
from pongxp.metrics import MetricsLog
from pongxp.metrics import read as read_metrics
from pongxp.run_folder import Run, keep_history

# A file that must never appear: the payloads below would create it if any
# byte of them were unpickled.
MARKER_NAME = "pwned-by-checkpoint"


class _Evil:
    """Unpickling this calls ``open(marker, "w")``: proof of code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def arrays_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def write_npz(path: Path, arrays: dict[str, np.ndarray], **changes: object) -> None:
    """Save ``arrays`` with ``changes`` applied; a change of None drops the key."""
    out = {k: v for k, v in arrays.items() if changes.get(k, v) is not None}
    out.update({k: np.asarray(v) for k, v in changes.items() if v is not None})
    with open(path, "wb") as f:
        np.savez(f, **out)


def _truncated(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])


def _tail_cut(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
    dst.write_bytes(src.read_bytes()[:-100])  # the zip directory at the end is gone


def _bit_flip(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
    data = bytearray(src.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside W1's bytes: the zip CRC catches it
    dst.write_bytes(bytes(data))


def _empty(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
    dst.write_bytes(b"")


def _random_bytes(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
    dst.write_bytes(random.Random(0).randbytes(4096))


def _pickle(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
    dst.write_bytes(pickle.dumps(_Evil(dst.parent / MARKER_NAME)))


def _object_array(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
    # np.savez pickles object arrays inside the .npz: the payload sits in "W1".
    evil = np.empty(1, dtype=object)
    evil[0] = _Evil(dst.parent / MARKER_NAME)
    with open(dst, "wb") as f:
        np.savez(f, **{**arrays, "W1": evil})


def _npy(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(dst, "wb") as f:
        np.save(f, arrays["W1"])


def _change(**changes: object) -> Callable[[Path, Path, dict[str, np.ndarray]], None]:
    def make(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
        write_npz(dst, arrays, **changes)

    return make


def _nan_w1(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
    w1 = arrays["W1"].copy()
    w1[3, 7] = np.nan
    write_npz(dst, arrays, W1=w1)


def _inf_cache(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
    cache = arrays["cache_W2"].copy()
    cache[0] = np.inf
    write_npz(dst, arrays, cache_W2=cache)


def _config(**changes: object) -> Callable[[Path, Path, dict[str, np.ndarray]], None]:
    def make(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
        config = {**json.loads(str(arrays["config"])), **changes}
        write_npz(dst, arrays, config=json.dumps(config))

    return make


def _adam(**changes: object) -> Callable[[Path, Path, dict[str, np.ndarray]], None]:
    """The file as an Adam run's (its moments: m = 0, v = the RMSProp cache; 7
    updates), with ``changes`` applied."""

    def make(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
        config = {**json.loads(str(arrays["config"])), "optimizer": "adam"}
        adam = {k: v for k, v in arrays.items() if not k.startswith("cache_")}
        for name in ("W1", "W2"):
            adam[f"cache_m_{name}"] = np.zeros_like(arrays[f"cache_{name}"])
            adam[f"cache_v_{name}"] = arrays[f"cache_{name}"]
        adam.update(config=np.asarray(json.dumps(config)), updates=np.asarray(7, np.int64))
        write_npz(dst, adam, **changes)

    return make


def _inf_moment(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
    v = arrays["cache_W2"].copy()
    v[1] = np.inf
    _adam(cache_v_W2=v)(src, dst, arrays)


def _damaged_stream(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
    streams = json.loads(str(arrays["streams"]))
    ale = base64.b64decode(streams[0]["ale"])
    streams[0]["ale"] = base64.b64encode(ale[: len(ale) // 2]).decode("ascii")
    write_npz(dst, arrays, streams=json.dumps(streams))


def _bad_rng(src: Path, dst: Path, arrays: dict[str, np.ndarray]) -> None:
    streams = json.loads(str(arrays["streams"]))
    streams[0]["action_rng"] = {"bit_generator": "PCG64", "state": "nonsense"}
    write_npz(dst, arrays, streams=json.dumps(streams))


# name -> (how to make the bad file, a word the error must contain)
BAD_FILES: dict[str, tuple[Callable[[Path, Path, dict[str, np.ndarray]], None], str]] = {
    "truncated": (_truncated, "not a readable .npz"),
    "tail cut": (_tail_cut, "not a readable .npz"),
    "bit flip": (_bit_flip, "not a readable .npz"),
    "empty": (_empty, "not a readable .npz"),
    "random bytes": (_random_bytes, "not a readable .npz checkpoint (not an .npz archive"),
    "pickle": (_pickle, "pickles are never loaded"),
    "object array": (_object_array, "holds pickled objects, which are never loaded"),
    "bare .npy": (_npy, "single .npy array"),
    "missing W2": (_change(W2=None), "missing W2"),
    "missing config": (_change(config=None), "missing config"),
    "W1 wrong shape": (_change(W1=np.zeros((16, 100), np.float32)), "W1 has shape (16, 100)"),
    "W2 wrong shape": (_change(W2=np.zeros(5, np.float32)), "W2 has shape (5,)"),
    "W1 as 1-d": (_change(W1=np.zeros(6400, np.float32)), "W1 has shape (6400,)"),
    "W1 int dtype": (_change(W1=np.zeros((16, 6400), np.int64)), "dtype int64"),
    "W1 float16": (_change(W1=np.zeros((16, 6400), np.float16)), "dtype float16"),
    "mixed float dtypes": (_change(W2=np.zeros(16, np.float64)), "W2 has dtype float64 but W1"),
    "format version 3": (_change(format_version=np.int64(3)), "format version 3"),
    "version as text": (_change(format_version=np.asarray("1")), "'format_version' is not an"),
    "NaN weight": (_nan_w1, "W1 contains NaN or inf"),
    "inf cache": (_inf_cache, "cache_W2 contains NaN or inf"),
    "negative episode": (_change(episode=np.int64(-3)), "'episode'"),
    "config not JSON": (_change(config=np.asarray("{nope")), "stored settings are invalid"),
    "config a list": (_change(config=np.asarray("[1, 2]")), "settings are a JSON list"),
    "config lr text": (_config(learning_rate="abc"), "--lr must be a finite number > 0, got 'abc'"),
    "config gamma 2": (_config(gamma=2.0), "--gamma must be in (0, 1]"),
    "config hidden lies": (_config(hidden=32), "config says hidden 32"),
    "missing streams": (_change(streams=None), "missing streams"),
    "missing cache": (_change(cache_W1=None), "missing cache_W1 (the state of its --optimizer"),
    "optimizer unknown": (_config(optimizer="sgd"), "--optimizer must be one of rmsprop, adam"),
    "clip norm < 0": (_config(clip_norm=-1.0), "--clip-norm must be a finite number >= 0"),
    "adam config, rmsprop state": (
        _config(optimizer="adam"),
        "missing cache_m_W1, cache_m_W2, cache_v_W1, cache_v_W2 (the state of its --optimizer "
        "adam)",
    ),
    "adam without updates": (_adam(updates=None), "missing updates"),
    "adam negative updates": (_adam(updates=np.int64(-1)), "'updates' has the impossible value"),
    "adam updates text": (_adam(updates=np.asarray("7")), "'updates' is not an integer"),
    "adam moment shape": (_adam(cache_m_W2=np.zeros(3, np.float32)), "cache_m_W2 has shape (3,)"),
    "adam moment dtype": (_adam(cache_v_W1=np.zeros((16, 6400))), "cache_v_W1 has dtype float64"),
    "adam inf moment": (_inf_moment, "cache_v_W2 contains NaN or inf"),
    "streams not JSON": (_change(streams=np.asarray("[{")), "rollout state is not valid JSON"),
    "streams empty": (_change(streams=np.asarray("[]")), "rollout state is not a non-empty list"),
    "stream seed bad": (_change(streams=np.asarray('[{"seed": -1}]')), "slot 0 is damaged"),
    "ALE state cut": (_damaged_stream, "rollout state of slot 0 is damaged"),
    "rng state bad": (_bad_rng, "rollout state of slot 0 is damaged"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_checkpoint_is_one_line_naming_file_and_problem(
    kind: str, small_checkpoint: Path, tmp_path: Path
) -> None:
    make, expected = BAD_FILES[kind]
    bad = tmp_path / "bad.npz"
    make(small_checkpoint, bad, arrays_of(small_checkpoint))
    before = bad.read_bytes()
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(bad)
    message = str(info.value)
    assert "\n" not in message, message
    assert str(bad) in message, message
    assert expected in message, message
    assert bad.read_bytes() == before, "load must not modify the file"
    assert not (tmp_path / MARKER_NAME).exists(), "code from the file was executed"


def test_an_adam_checkpoint_round_trips(small_checkpoint: Path, tmp_path: Path) -> None:
    """Adam's moments and update count are saved and read back exactly; the
    same file through ``_adam`` (as the bad cases above make theirs) loads."""
    made = tmp_path / "made.npz"
    _adam()(small_checkpoint, made, arrays_of(small_checkpoint))
    ckpt = checkpoint.load(made)
    assert ckpt.config.optimizer == "adam" and ckpt.updates == 7
    assert sorted(ckpt.cache) == ["m_W1", "m_W2", "v_W1", "v_W2"]
    rng = np.random.default_rng(0)
    ckpt.cache = {k: rng.random(v.shape).astype(v.dtype) for k, v in ckpt.cache.items()}
    ckpt.updates = 123
    again = checkpoint.load(checkpoint.save(tmp_path / "again.npz", ckpt))
    assert again.updates == 123 and again.config.optimizer == "adam"
    for k, v in ckpt.cache.items():
        np.testing.assert_array_equal(again.cache[k], v)
    assert not any(k in arrays_of(tmp_path / "again.npz") for k in ("cache_W1", "cache_W2"))


def test_a_checkpoint_from_before_adam_loads_as_rmsprop(
    small_checkpoint: Path, tmp_path: Path
) -> None:
    """Files written before --optimizer: no ``updates``, no optimizer in the settings."""
    arrays = arrays_of(small_checkpoint)
    config = json.loads(str(arrays["config"]))
    old_config = {k: v for k, v in config.items() if k not in ("optimizer", "clip_norm")}
    old = tmp_path / "old.npz"
    write_npz(old, arrays, updates=None, config=json.dumps(old_config))
    assert "updates" not in arrays_of(old)
    ckpt = checkpoint.load(old)
    assert (ckpt.config.optimizer, ckpt.config.clip_norm, ckpt.updates) == ("rmsprop", 0.0, 0)
    np.testing.assert_array_equal(ckpt.cache["W1"], arrays["cache_W1"])
    assert sorted(ckpt.cache) == ["W1", "W2"]


def test_the_pickle_payloads_really_execute_when_unpickled(tmp_path: Path) -> None:
    """Guard for the test above: the marker payload is live, so its absence means something."""
    pickle.loads(pickle.dumps(_Evil(tmp_path / MARKER_NAME)))
    assert (tmp_path / MARKER_NAME).exists()


def test_wrong_hidden_size_says_which_flag_to_use(small_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match=r"hidden size 16, not 200; resume with --hidden 16"):
        checkpoint.load(small_checkpoint, hidden=200)


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_path_that_is_not_a_file(what: str, tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    if what == "directory":
        path.mkdir()
    with pytest.raises(
        CheckpointError, match="does not exist" if what == "missing" else "not a file"
    ):
        checkpoint.load(path)


# -- writing: full disk, leftovers of killed writers ----------------------------------


def _temp_of(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.tmp-{pid}")


def _dead_pid() -> int:
    """A pid that no process has: a child that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux /dev/full")
def test_disk_full_keeps_the_previous_checkpoint(small_checkpoint: Path, tmp_path: Path) -> None:
    """A real ENOSPC from the kernel: the temporary file this process would write
    is made a symlink to /dev/full, where every write fails with ENOSPC."""
    path = tmp_path / "run.npz"
    path.write_bytes(small_checkpoint.read_bytes())
    before = path.read_bytes()
    ckpt = checkpoint.load(path)
    ckpt.episode += 1
    temp = _temp_of(path, os.getpid())
    temp.symlink_to("/dev/full")
    with pytest.raises(CheckpointError) as info:
        checkpoint.save(path, ckpt)
    message = str(info.value)
    assert "No space left on device" in message and str(path) in message, message
    assert "previous checkpoint is unchanged" in message
    assert path.read_bytes() == before
    assert not temp.exists() and not temp.is_symlink(), "the failed temp file must be removed"
    assert checkpoint.load(path).episode == ckpt.episode - 1


def test_save_removes_temp_files_of_killed_writers_only(
    small_checkpoint: Path, tmp_path: Path
) -> None:
    path = tmp_path / "run.npz"
    ckpt = checkpoint.load(small_checkpoint)
    stale = _temp_of(path, _dead_pid())
    stale.write_bytes(b"half a checkpoint")
    live = _temp_of(path, os.getppid())  # a running process: maybe mid-write, keep it
    live.write_bytes(b"being written")
    checkpoint.save(path, ckpt)
    assert not stale.exists()
    assert live.exists()
    assert checkpoint.load(path).episode == ckpt.episode


def _run(tmp_path: Path) -> Run:
    """An empty run folder (its manifest alone)."""
    run = Run(tmp_path / "run")
    run.folder.mkdir()
    run.manifest.write_text("{}")
    return run


def _save(run: Run, ckpt: checkpoint.Checkpoint, keep: int) -> None:
    """Save as training does: the checkpoint, then its --keep history."""
    checkpoint.save(run.checkpoint, ckpt)
    keep_history(run, ckpt.episode, keep)


def test_temp_files_are_never_taken_for_checkpoints(small_checkpoint: Path, tmp_path: Path) -> None:
    run = _run(tmp_path)
    ckpt = checkpoint.load(small_checkpoint)
    _save(run, ckpt, keep=3)
    # Leftovers a kill -9 can produce, named as the writer names them.
    for name in (".checkpoint.npz.tmp-999999", ".checkpoint.npz.probe-5"):
        (run.folder / name).write_bytes(run.checkpoint.read_bytes())
    (run.kept_dir / ".ep00000009.npz.tmp-1").write_bytes(run.checkpoint.read_bytes())
    assert run.kept_checkpoints() == [run.kept(ckpt.episode)]


def test_keep_holds_the_newest_k(small_checkpoint: Path, tmp_path: Path) -> None:
    run = _run(tmp_path)
    ckpt = checkpoint.load(small_checkpoint)
    for episode in range(1, 7):
        ckpt.episode = episode
        _save(run, ckpt, keep=3)
    assert [p.name for p in run.kept_checkpoints()] == [
        "ep00000004.npz",
        "ep00000005.npz",
        "ep00000006.npz",
    ]
    assert [checkpoint.load(p).episode for p in run.kept_checkpoints()] == [4, 5, 6]


def test_lowering_keep_prunes_the_older_copies(small_checkpoint: Path, tmp_path: Path) -> None:
    run = _run(tmp_path)
    ckpt = checkpoint.load(small_checkpoint)
    for episode, keep in ((1, 3), (2, 3), (3, 3), (4, 2)):
        ckpt.episode = episode
        _save(run, ckpt, keep=keep)
    assert [p.name for p in run.kept_checkpoints()] == ["ep00000003.npz", "ep00000004.npz"]
    ckpt.episode = 5
    _save(run, ckpt, keep=1)  # keep 1: the checkpoint alone
    assert run.kept_checkpoints() == []
    assert checkpoint.load(run.checkpoint).episode == 5


def test_keep_works_without_hard_links(
    small_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on FAT or some network filesystems, where link() fails with EPERM."""

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    run = _run(tmp_path)
    ckpt = checkpoint.load(small_checkpoint)
    for episode in range(1, 5):
        ckpt.episode = episode
        _save(run, ckpt, keep=3)
    kept = run.kept_checkpoints()
    assert [checkpoint.load(p).episode for p in kept] == [2, 3, 4]
    assert kept[-1].read_bytes() == run.checkpoint.read_bytes()  # a copy of the newest
    assert not kept[-1].samefile(run.checkpoint)
    assert sorted(p.name for p in run.kept_dir.iterdir() if p.name.startswith(".")) == []


def test_metrics_rewrite_on_resume_clears_temp_files_of_killed_runs(tmp_path: Path) -> None:
    """A kill during the rewrite leaves its temp file; the next run removes it."""
    log = tmp_path / "run.jsonl"
    log.write_text("".join(json.dumps({"episode": e}) + "\n" for e in (1, 2, 3)))
    finished = subprocess.Popen(["true"])
    finished.wait()  # its pid now names no process, like a killed writer's
    dead = tmp_path / f".run.jsonl.tmp-{finished.pid}"
    alive = tmp_path / f".run.jsonl.tmp-{os.getppid()}"  # another live writer's: kept
    for temp in (dead, alive):
        temp.write_text('{"episode": 1}\n')
    MetricsLog(log, read_metrics(log)[:2]).close()
    assert [r["episode"] for r in read_metrics(log)] == [1, 2]
    assert sorted(tmp_path.iterdir()) == sorted([log, alive])


def test_a_bad_checkpoint_names_the_newest_kept_one_that_loads(
    small_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run(tmp_path)
    path = run.checkpoint
    ckpt = checkpoint.load(small_checkpoint)
    for episode in (10, 20, 30):
        ckpt.episode = episode
        _save(run, ckpt, keep=3)
    # Damage the file in place: ep30 is a hard link to it, so it is damaged too.
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 3)
        f.write(b"\xff" * 64)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path} is not a readable .npz"), message
    older = run.kept(20)
    assert message.endswith(f"an older kept checkpoint loads: use {older} instead")
    # evaluate says so too: --resume is a train flag.
    assert cli.evaluate_main([str(path)]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    # Training names its own flag, also when the file is gone altogether.
    path.unlink()
    with pytest.raises(
        CheckpointError, match=r"does not exist.*: --resume .*checkpoints/ep00000020\.npz$"
    ):
        checkpoint.load(path, use_older="--resume {}")


def test_unwritable_checkpoint_path_is_found_before_work(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(
        CheckpointError, match=f"cannot write checkpoint .*: {a_file} is a file, not a directory"
    ):
        checkpoint.check_writable(a_file / "run.npz")
    with pytest.raises(CheckpointError, match="it is a directory"):
        checkpoint.check_writable(tmp_path)
    checkpoint.check_writable(tmp_path / "new" / "run.npz")  # creates the directory
    assert (tmp_path / "new").is_dir() and list((tmp_path / "new").iterdir()) == []
