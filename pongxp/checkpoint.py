"""Checkpoints: one ``.npz`` per save, written atomically, read strictly.

Saving writes a temporary file in the same directory, fsyncs it and renames it
over the target, so a crash or Ctrl-C at any moment leaves either the old or
the new checkpoint, never a torn one. Loading uses ``allow_pickle=False`` (no
code from the file is ever run) and checks every key, shape, dtype and value
before anything is used.

A failed load names any older kept checkpoint (``--keep``) of the run that does
load, so one bad file costs one checkpoint interval, not the run. A run folder
stands for its checkpoint (``run_folder.checkpoint_of``).

Test hook: ``PONGXP_TEST_SAVE_DELAY=<seconds>`` makes every save sleep half
that time after creating its (still empty) temporary file and half after
writing it, before the rename. The fault-injection tests use it to land
``kill -9`` inside a checkpoint write; it changes nothing else.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pongxp.config import INPUT_SIZE, OPTIMIZERS, TrainConfig
from pongxp.optim import state_names

# 2: rollout state per batch slot ("streams"). 1 held it per actor ("actors"); such
# files still load, and a resume from one starts fresh streams (workers.py).
FORMAT_VERSION = 2
WEIGHT_NAMES = ("W1", "W2")
REQUIRED = (
    "format_version",
    "W1",
    "W2",
    "episode",
    "running_reward",
    "total_steps",
    "elapsed",
    "config",
)
STREAM_KEY = {1: "actors", 2: "streams"}  # by format version
# The optimiser's state, each array as "cache_<key>" with the keys of
# optim.state_names: RMSProp's cache_W1, cache_W2 (every file before Adam);
# Adam's cache_m_W1, cache_m_W2, cache_v_W1, cache_v_W2. Required as the stored
# config's --optimizer says (older files have none: rmsprop).
STATE_PREFIX = "cache_"
STATE_KEYS = {
    opt: tuple(STATE_PREFIX + k for k in state_names(opt, WEIGHT_NAMES)) for opt in OPTIMIZERS
}
# The updates the state has taken (Adam's t): required with Adam, optional
# otherwise (older files lack it: 0).
UPDATES_KEY = "updates"
# Optional, read only: where an older pongxp's flat checkpoint had its metrics log.
LOG_KEY = "metrics_log"
# Optional: the step count the log holds at the checkpoint's episode, where it
# is not total_steps (a batch of steps plays on after an episode's end).
LOGGED_STEPS_KEY = "logged_steps"
# Agent files hold this note in place of the optimiser and rollout state.
AGENT_KEY = "agent"
AGENT_NOTE = (
    "pongxp agent. Input x: 6400 float values, the difference of two preprocessed "
    "frames (rows 35..194, every 2nd row and column, channel 0, 144 and 109 -> 0, "
    "other non-zero -> 1). Hidden h = relu(W1 @ x), W1 (H, 6400); "
    "p = sigmoid(W2 @ h), W2 (H,): the probability of action 2 (up), else 3 (down)."
)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or written; the message names the file."""


@dataclass
class Checkpoint:
    """Everything needed to continue a run exactly. Arrays are host NumPy."""

    params: dict[str, np.ndarray]  # W1 (H, 6400), W2 (H,), float32 or float64
    # The optimiser's state, keyed as optim.state_names(config.optimizer, ...)
    # says (RMSProp: W1, W2; Adam: m_W1, m_W2, v_W1, v_W2), shaped and typed
    # like the weights.
    cache: dict[str, np.ndarray]
    episode: int  # episodes finished
    running_reward: float
    total_steps: int
    elapsed: float  # seconds of training so far
    config: TrainConfig
    streams: list[dict[str, Any]]  # per batch slot: see workers.py; [] from format 1
    agent: bool = False  # an agent file (``save_agent``): weights only, no cache or streams
    # An older flat checkpoint's metrics log, relative to its directory
    # (run_folder's import of old runs); None in run folders' checkpoints.
    metrics_log: str | None = None
    # total_steps as the log records it at ``episode``; None: total_steps itself.
    logged_steps: int | None = None
    # Updates ``cache`` has taken since it started from zero (Adam's t).
    updates: int = 0

    @property
    def log_steps(self) -> int:
        """The total_steps the metrics log holds at the checkpoint's episode."""
        return self.total_steps if self.logged_steps is None else self.logged_steps


def save(path: str | os.PathLike[str], ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically.

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
        "streams": np.asarray(json.dumps(ckpt.streams)),
        UPDATES_KEY: np.asarray(ckpt.updates, dtype=np.int64),
    }
    if ckpt.logged_steps is not None and ckpt.logged_steps != ckpt.total_steps:
        arrays[LOGGED_STEPS_KEY] = np.asarray(ckpt.logged_steps, dtype=np.int64)
    for name in WEIGHT_NAMES:
        arrays[name] = np.asarray(ckpt.params[name])
    for key in state_names(ckpt.config.optimizer, WEIGHT_NAMES):
        arrays[STATE_PREFIX + key] = np.asarray(ckpt.cache[key])
    _write_atomically(path, arrays)
    return path


def temp_name(path: Path, pid: int) -> Path:
    """Where process ``pid`` writes ``path`` before renaming it into place.

    Hidden and with a different suffix, so neither ``load`` of the real name
    nor a listing of kept checkpoints can ever pick up a half-written file.
    """
    return path.with_name(f".{path.name}.tmp-{pid}")


def remove_stale_temps(path: Path) -> None:
    """Delete temporary files (``temp_name``) left by writers of ``path`` that
    were killed.

    Only files whose writer process no longer exists are removed, so a
    ``kill -9`` during a write cannot slowly fill the disk.
    """
    prefix = f".{path.name}.tmp-"
    with contextlib.suppress(OSError):
        for p in path.parent.iterdir():
            pid = p.name[len(prefix) :]
            if p.name.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    p.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: exists, owned by someone else
        return True
    return True


def _test_delay() -> float:
    try:
        return max(float(os.environ.get("PONGXP_TEST_SAVE_DELAY", "0")), 0.0)
    except ValueError:
        return 0.0


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = temp_name(path, os.getpid())
    delay = _test_delay()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        with open(tmp, "wb") as f:
            if delay:
                time.sleep(delay / 2)  # test hook: an empty temp file exists
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        if delay:
            time.sleep(delay / 2)  # test hook: a complete temp file, not yet renamed
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = exc.strerror or type(exc).__name__
        raise CheckpointError(
            f"cannot write checkpoint {path}: {reason}; the previous checkpoint is unchanged "
            "(free space, or continue the run in a writable folder with --run)"
        ) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def check_writable(
    path: str | os.PathLike[str],
    what: str = "checkpoint",
    error: type[Exception] = CheckpointError,
) -> None:
    """Check, before any work, that ``path`` can be written (a probe file is
    created and removed beside it; an existing ``path`` is not touched).

    Every command that writes a file calls this before it starts working.

    Args:
        what: names the file in the message, e.g. ``"metrics log"``.
        error: the exception to raise (each command reports its own kind).

    Raises:
        ``error`` (CheckpointError by default): one line saying why not.
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"cannot write {what} {path}: it is a directory; give a file name")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:  # mkdir would only say "File exists"
        raise error(f"cannot write {what} {path}: {blocker} is a file, not a directory")
    probe = path.with_name(f".{path.name}.probe-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"pongxp")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise error(f"cannot write {what} {path}: {reason}; choose a writable path") from None
    finally:  # also on Ctrl-C
        with contextlib.suppress(OSError):
            probe.unlink()


@contextlib.contextmanager
def replaced_whole(
    path: Path, what: str, error: type[Exception] = CheckpointError
) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed over ``path`` when
    the block ends without an error, deleted in any case.

    So a file that others read (a video, a picture) is replaced whole or not at
    all, and an interrupted write leaves no half-written file behind. The
    temporary name keeps ``path``'s suffix, for writers that go by it.

    Raises:
        ``error``: one line, for an OSError in the block or in the rename.
    """
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise error(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows it
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load(
    path: str | os.PathLike[str], hidden: int | None = None, use_older: str = "use {} instead"
) -> Checkpoint:
    """Read and check a checkpoint. The file is never modified.

    Args:
        hidden: if given, the hidden size the caller needs.
        use_older: how the caller's command takes an older kept checkpoint
            instead, ``{}`` standing for its path: ``"--resume {}"`` for training.

    Raises:
        CheckpointError: one line naming the file and what is wrong, and the
            newest older kept checkpoint of its run that does load, if there is one.
    """
    from pongxp.run_folder import checkpoint_of

    path, older = checkpoint_of(path)
    try:
        return _load(path, hidden)
    except CheckpointError as exc:
        for candidate in older:
            try:
                _load(candidate, hidden)
            except CheckpointError:
                continue
            raise CheckpointError(
                f"{exc}; an older kept checkpoint loads: {use_older.format(candidate)}"
            ) from None
        raise


def _load(path: Path, hidden: int | None) -> Checkpoint:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file; give the .npz file itself")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            # A bare .npy array: np.load returns the array itself.
            raise CheckpointError(f"{path} is a single .npy array, not a pongxp checkpoint")
        with loaded as data:
            version = data["format_version"] if "format_version" in data.files else None
            if AGENT_KEY in data.files:
                wanted = (*REQUIRED, AGENT_KEY)
            else:
                wanted = (*REQUIRED, STREAM_KEY.get(_version(path, version), "streams"))
            missing = [k for k in wanted if k not in data.files]
            if missing:
                raise CheckpointError(
                    f"{path} is not a pongxp checkpoint: missing {', '.join(missing)}"
                )
            # The optimiser's state: which of it is required, the stored config says.
            states = {k for keys in STATE_KEYS.values() for k in keys}
            optional = (LOG_KEY, LOGGED_STEPS_KEY, UPDATES_KEY, *sorted(states))
            arrays = {k: data[k] for k in (*wanted, *optional) if k in data.files}
    except CheckpointError:
        raise
    except (
        OSError,
        ValueError,  # includes "pickled data" refusals: nothing from the file is run
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        KeyError,
        NotImplementedError,  # zip members in an unsupported compression
        MemoryError,  # a header claiming an absurd shape
    ) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # NumPy's own words would suggest allow_pickle=True, the one thing not to do.
        if "pickled" in detail:  # any non-.npz/.npy file is taken for a pickle
            detail = "not an .npz archive; pickles are never loaded"
        elif "Object arrays" in detail:
            detail = "an array in it holds pickled objects, which are never loaded"
        raise CheckpointError(f"{path} is not a readable .npz checkpoint ({detail})") from None
    return _validate(path, arrays, hidden)


def _scalar(path: Path, arrays: dict[str, np.ndarray], key: str, kind: str) -> Any:
    value = arrays[key]
    if value.shape != () or value.dtype.kind not in kind:
        want = {"iu": "an integer", "f": "a float", "U": "a string"}[kind]
        raise CheckpointError(
            f"{path}: '{key}' is not {want} (shape {value.shape}, dtype {value.dtype})"
        )
    return value.item()


def _version(path: Path, value: np.ndarray | None) -> int | None:
    """The file's format version, or None if it has none; refuses unknown ones."""
    if value is None:
        return None  # reported as a missing key
    version = _scalar(path, {"format_version": value}, "format_version", "iu")
    if version not in STREAM_KEY:
        raise CheckpointError(
            f"{path} has format version {version}; this pongxp reads versions "
            f"{', '.join(map(str, STREAM_KEY))}: use a newer pongxp"
        )
    return int(version)


def _validate(path: Path, arrays: dict[str, np.ndarray], hidden: int | None) -> Checkpoint:
    try:
        config = TrainConfig.from_json(_scalar(path, arrays, "config", "U"))
        # Stored settings become the defaults of a resume: check them here so a
        # bad value is reported against this file, not as a bad flag.
        config.validate(check_env=False)
    except (ValueError, TypeError, AttributeError) as exc:  # ConfigError, JSON errors
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: its stored settings are invalid ({detail})") from None
    agent = AGENT_KEY in arrays
    state_keys = () if agent else STATE_KEYS[config.optimizer]
    needed = [*state_keys, *((UPDATES_KEY,) if config.optimizer == "adam" and not agent else ())]
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise CheckpointError(
            f"{path} is not a pongxp checkpoint: missing {', '.join(missing)} "
            f"(the state of its --optimizer {config.optimizer})"
        )
    if "streams" in arrays:
        try:
            streams = json.loads(_scalar(path, arrays, "streams", "U"))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: rollout state is not valid JSON ({exc})") from None
        _check_streams(path, streams)
    else:  # an agent file, or format 1: per-actor state, which cannot be mapped onto slots
        streams = []
    w1 = arrays["W1"]
    h = w1.shape[0] if w1.ndim == 2 else -1
    expected = {"W1": (h, INPUT_SIZE), "W2": (h,)}
    for name, shape in expected.items():
        # The weight and its state arrays (cache_W1; cache_m_W1 and cache_v_W1).
        for key in (name, *(k for k in state_keys if k.endswith(f"_{name}"))):
            a = arrays[key]
            if a.shape != shape:
                want = f"(H, {INPUT_SIZE})" if key == "W1" else str(shape)
                raise CheckpointError(f"{path}: {key} has shape {a.shape}, expected {want}")
            if a.dtype not in (np.float32, np.float64):
                raise CheckpointError(f"{path}: {key} has dtype {a.dtype}, expected float32/64")
            if a.dtype != w1.dtype:
                raise CheckpointError(f"{path}: {key} has dtype {a.dtype} but W1 has {w1.dtype}")
            if not np.all(np.isfinite(a)):
                raise CheckpointError(f"{path}: {key} contains NaN or inf")
    if hidden is not None and h != hidden:
        raise CheckpointError(
            f"{path} has hidden size {h}, not {hidden}; resume with --hidden {h} or start a new run"
        )
    if config.hidden != h:
        raise CheckpointError(f"{path}: config says hidden {config.hidden} but W1 has {h} rows")
    counted = ["episode", "total_steps"]
    counted += [k for k in (LOGGED_STEPS_KEY, UPDATES_KEY) if k in arrays]
    counters = {k: _scalar(path, arrays, k, "iu") for k in counted}
    floats = {k: _scalar(path, arrays, k, "f") for k in ("running_reward", "elapsed")}
    for key, value in {**counters, **floats}.items():
        # running_reward is an average of episode rewards, so only finite.
        if not (np.isfinite(value) and (key == "running_reward" or value >= 0)):
            raise CheckpointError(f"{path}: '{key}' has the impossible value {value!r}")
    logged = counters.get(LOGGED_STEPS_KEY)
    if logged is not None and logged > counters["total_steps"]:
        raise CheckpointError(f"{path}: '{LOGGED_STEPS_KEY}' exceeds 'total_steps'")
    log = _scalar(path, arrays, LOG_KEY, "U") if LOG_KEY in arrays else None
    return Checkpoint(
        metrics_log=log,
        logged_steps=logged,
        params={n: arrays[n] for n in WEIGHT_NAMES},
        cache={k.removeprefix(STATE_PREFIX): arrays[k] for k in state_keys},
        updates=counters.get(UPDATES_KEY, 0),
        episode=counters["episode"],
        running_reward=floats["running_reward"],
        total_steps=counters["total_steps"],
        elapsed=floats["elapsed"],
        config=config,
        streams=streams,
        agent=agent,
    )


def _check_streams(path: Path, streams: Any) -> None:
    """Check each slot's stream decodes, before any emulator or worker sees it.

    A damaged emulator state would otherwise fail deep inside ale-py (or kill
    a rollout worker process) with no mention of this file.
    """
    import ale_py

    if not isinstance(streams, list) or not streams:
        raise CheckpointError(f"{path}: rollout state is not a non-empty list")
    for i, stream in enumerate(streams):
        try:
            if not isinstance(stream, dict):
                raise TypeError("not an object")
            if "seed" in stream:  # fresh: not played yet
                seed = stream["seed"]
                if not (isinstance(seed, int) and 0 <= seed < 2**32):
                    raise ValueError("bad seed")
                continue
            ale_py.ALEState(base64.b64decode(stream["ale"], validate=True))
            for key in ("env_rng", "action_rng"):
                if stream[key].get("bit_generator") != "PCG64":
                    raise ValueError(f"{key} is not a PCG64 state")
                np.random.PCG64().state = stream[key]  # validates the fields
            if "episode" in stream:
                _check_paused(stream["episode"])
        # ale-py reports undecodable bytes as SystemError; the rest are ours.
        except (
            TypeError,
            KeyError,
            ValueError,
            AttributeError,
            SystemError,
            binascii.Error,
            zlib.error,
        ):
            raise CheckpointError(f"{path}: the rollout state of slot {i} is damaged") from None


#: The arrays of a paused episode's frames, by the actor loop that paused it
#: (``rollout.Actor``: the ALE's palette screens, or Gymnasium's last screen).
_PAUSED_FRAMES = {
    frozenset({"previous", "next", "foreground"}): {
        "previous": ((210, 160), np.uint8),
        "next": ((210, 160), np.uint8),
        "foreground": ((256,), np.int8),
    },
    frozenset({"screen", "previous"}): {
        "screen": ((210, 160, 3), np.uint8),
        "previous": ((INPUT_SIZE,), np.uint8),
    },
}


def _check_paused(episode: Any) -> None:
    """Raise ValueError (or the like) unless ``episode`` is a paused episode's
    record as ``rollout.Actor.state`` writes it."""
    from pongxp.rollout import unpack_array

    for key in ("reward", "steps", "last_action"):
        if not isinstance(episode[key], int) or isinstance(episode[key], bool):
            raise ValueError(f"{key} is not an integer")
    if not -21 <= episode["reward"] <= 21 or episode["steps"] < 1:
        raise ValueError("impossible score or length")
    frames = episode["frames"]
    shapes = _PAUSED_FRAMES[frozenset(frames)]
    for name, (shape, dtype) in shapes.items():
        array = unpack_array(frames[name])
        if array.shape != shape or array.dtype != dtype:
            raise ValueError(f"{name} has the wrong shape or dtype")


def save_agent(path: str | os.PathLike[str], ckpt: Checkpoint) -> Path:
    """Write the policy alone: float32 W1 and W2, the training settings and
    counters, and a note saying how the weights are used; about 5 MB at H = 200.

    Any program that reads ``W1`` and ``W2`` from the ``.npz`` can play with it;
    ``pongxp evaluate`` and ``video`` take it like a checkpoint. It cannot be
    resumed: it has no optimiser or emulator state.

    Raises:
        CheckpointError: the file cannot be written; a previous one is unchanged.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "format_version": np.asarray(FORMAT_VERSION, dtype=np.int64),
        AGENT_KEY: np.asarray(AGENT_NOTE),
        "episode": np.asarray(ckpt.episode, dtype=np.int64),
        "running_reward": np.asarray(ckpt.running_reward, dtype=np.float64),
        "total_steps": np.asarray(ckpt.total_steps, dtype=np.int64),
        "elapsed": np.asarray(ckpt.elapsed, dtype=np.float64),
        "config": np.asarray(ckpt.config.to_json()),
    }
    for name in WEIGHT_NAMES:
        arrays[name] = np.asarray(ckpt.params[name], dtype=np.float32)
    _write_atomically(path, arrays)
    return path
