"""Checkpoints: one ``.npz`` per save, written atomically, read strictly.

Saving writes a temporary file in the same directory, fsyncs it and renames it
over the target, so a crash or Ctrl-C at any moment leaves either the old or
the new checkpoint, never a torn one. Loading uses ``allow_pickle=False`` (no
code from the file is ever run) and checks every key, shape, dtype and value
before anything is used.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pongxp.config import INPUT_SIZE, TrainConfig

FORMAT_VERSION = 1
WEIGHT_NAMES = ("W1", "W2")
REQUIRED = (
    "format_version",
    "W1",
    "W2",
    "cache_W1",
    "cache_W2",
    "episode",
    "running_reward",
    "total_steps",
    "elapsed",
    "config",
    "actors",
)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or written; the message names the file."""


@dataclass
class Checkpoint:
    """Everything needed to continue a run exactly. Arrays are host NumPy."""

    params: dict[str, np.ndarray]  # W1 (H, 6400), W2 (H,), float32 or float64
    cache: dict[str, np.ndarray]  # RMSProp cache, same shapes and dtype
    episode: int  # episodes finished
    running_reward: float
    total_steps: int
    elapsed: float  # seconds of training so far
    config: TrainConfig
    actors: list[dict[str, Any]]  # rollout.Actor.state() of each actor


def save(path: str | os.PathLike[str], ckpt: Checkpoint, keep: int = 1) -> Path:
    """Write ``ckpt`` to ``path`` atomically; with keep > 1 also keep history.

    History copies are ``<stem>.ep<episode>.npz`` beside ``path``; the newest
    ``keep`` of them are kept (``path`` always holds the latest).

    Raises:
        CheckpointError: the directory cannot be written (full, read-only, ...);
            the previous checkpoint is left as it was.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "format_version": np.asarray(FORMAT_VERSION, dtype=np.int64),
        "episode": np.asarray(ckpt.episode, dtype=np.int64),
        "running_reward": np.asarray(ckpt.running_reward, dtype=np.float64),
        "total_steps": np.asarray(ckpt.total_steps, dtype=np.int64),
        "elapsed": np.asarray(ckpt.elapsed, dtype=np.float64),
        "config": np.asarray(ckpt.config.to_json()),
        "actors": np.asarray(json.dumps(ckpt.actors)),
    }
    for name in WEIGHT_NAMES:
        arrays[name] = np.asarray(ckpt.params[name])
        arrays[f"cache_{name}"] = np.asarray(ckpt.cache[name])
    _write_atomically(path, arrays)
    if keep > 1:
        _keep_history(path, ckpt.episode, keep)
    return path


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = exc.strerror or type(exc).__name__
        raise CheckpointError(
            f"cannot write checkpoint {path}: {reason}; the previous checkpoint is unchanged "
            "(free space or choose a writable --checkpoint path)"
        ) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows it
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def history_paths(path: str | os.PathLike[str]) -> list[Path]:
    """Kept history checkpoints of ``path``, oldest first."""
    path = Path(path)
    pattern = re.compile(re.escape(path.stem) + r"\.ep(\d+)" + re.escape(path.suffix) + "$")
    found = []
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            m = pattern.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def _keep_history(path: Path, episode: int, keep: int) -> None:
    snapshot = path.with_name(f"{path.stem}.ep{episode:08d}{path.suffix}")
    try:
        with contextlib.suppress(FileNotFoundError):
            snapshot.unlink()
        os.link(path, snapshot)  # the same bytes, no second write
        for old in history_paths(path)[:-keep]:
            old.unlink()
    except OSError as exc:
        raise CheckpointError(
            f"saved {path} but cannot keep history {snapshot.name}: {exc.strerror}"
        ) from exc


def load(path: str | os.PathLike[str], hidden: int | None = None) -> Checkpoint:
    """Read and check a checkpoint. The file is never modified.

    Args:
        hidden: if given, the hidden size the caller needs.

    Raises:
        CheckpointError: one line naming the file and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in REQUIRED if k not in data.files]
            if missing:
                raise CheckpointError(
                    f"{path} is not a pongxp checkpoint: missing {', '.join(missing)}"
                )
            arrays = {k: data[k] for k in REQUIRED}
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable .npz checkpoint ({detail})") from None
    return _validate(path, arrays, hidden)


def _scalar(path: Path, arrays: dict[str, np.ndarray], key: str, kind: str) -> Any:
    value = arrays[key]
    if value.shape != () or value.dtype.kind not in kind:
        raise CheckpointError(f"{path}: '{key}' has shape {value.shape} dtype {value.dtype}")
    return value.item()


def _validate(path: Path, arrays: dict[str, np.ndarray], hidden: int | None) -> Checkpoint:
    version = _scalar(path, arrays, "format_version", "iu")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {version}; this pongxp reads version {FORMAT_VERSION}"
        )
    try:
        config = TrainConfig.from_json(_scalar(path, arrays, "config", "U"))
        actors = json.loads(_scalar(path, arrays, "actors", "U"))
    except (json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{path}: config or actor state is not valid JSON ({exc})") from None
    if not isinstance(actors, list):
        raise CheckpointError(f"{path}: actor state is not a list")
    w1 = arrays["W1"]
    h = w1.shape[0] if w1.ndim == 2 else -1
    expected = {"W1": (h, INPUT_SIZE), "W2": (h,)}
    for name, shape in expected.items():
        for key in (name, f"cache_{name}"):
            a = arrays[key]
            if a.shape != shape:
                raise CheckpointError(f"{path}: {key} has shape {a.shape}, expected {shape}")
            if a.dtype not in (np.float32, np.float64) or a.dtype != w1.dtype:
                raise CheckpointError(f"{path}: {key} has dtype {a.dtype}, expected float32/64")
            if not np.all(np.isfinite(a)):
                raise CheckpointError(f"{path}: {key} contains NaN or inf")
    if hidden is not None and h != hidden:
        raise CheckpointError(
            f"{path} has hidden size {h}, not {hidden}; resume with --hidden {h} or start a new run"
        )
    if config.hidden != h:
        raise CheckpointError(f"{path}: config says hidden {config.hidden} but W1 has {h} rows")
    return Checkpoint(
        params={n: arrays[n] for n in WEIGHT_NAMES},
        cache={n: arrays[f"cache_{n}"] for n in WEIGHT_NAMES},
        episode=_scalar(path, arrays, "episode", "iu"),
        running_reward=_scalar(path, arrays, "running_reward", "f"),
        total_steps=_scalar(path, arrays, "total_steps", "iu"),
        elapsed=_scalar(path, arrays, "elapsed", "f"),
        config=config,
        actors=actors,
    )
