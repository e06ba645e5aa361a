"""Every setting of a training run, in one place, with its checks."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from pongxp.slot_share import slot_quota

#: Screen pixels after preprocessing (80 x 80).
INPUT_SIZE = 6400

DEVICES = ("cpu", "gpu", "auto")
ACTORS = ("processes", "ray")
#: What ``ray.init(address=...)`` takes for an existing cluster: the head's GCS
#: address (``ray start --head`` prints it), a Ray Client address, or auto.
_RAY_ADDRESS = re.compile(r"auto|(ray://)?[^\s/]+:\d{1,5}")
#: More rollout processes than this is surely a typo (each holds an emulator).
MAX_NUM_ENVS = 512
#: Episodes per update. Each slot of a batch keeps an emulator stream, and an
#: update holds every step's activations (at H = 200 and ~5k steps an episode,
#: about 4 MB each in float32): 1024 episodes already need ~4 GB per update.
MAX_BATCH_SIZE = 1024
#: Steps per update in a batch of steps (``--batch-steps``): as much memory as
#: 1024 episodes of ~5k steps.
MAX_BATCH_STEPS = 5_000_000
#: Every checkpoint and agent file pongxp writes ends in this.
CHECKPOINT_SUFFIX = ".npz"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


DTYPES = ("float32", "float64")
#: Whose mean and spread standardise the returns (update.policy_gradient).
STANDARDIZE = ("episode", "batch")


#: Named sets of algorithm settings (``train.py --preset NAME``); flags given
#: explicitly win. ``karpathy`` is the defaults below, as in pg-pong.py and the
#: tutorial. ``fast`` is the same algorithm tuned to learn in fewer episodes.
#: ``many-cores`` doubles fast's batch and learning rate: no fewer steps to a
#: win, and 20 actors busy instead of 10. ``steps`` is many-cores with batches
#: of 34,000 emulator steps instead of 20 whole episodes: the update rate stays
#: steady as games grow long: a median of 22.3M steps to a win over 3 seeds. The
#: sweeps behind them (made with bench/bench_learning.py) are
#: bench/results/learning-lr.md, learning.md and learning-steps.md.
PRESETS: dict[str, dict[str, Any]] = {
    "karpathy": {},
    "fast": {"learning_rate": 1e-3},
    "many-cores": {"learning_rate": 2e-3, "batch_size": 20},
    "steps": {"learning_rate": 2e-3, "batch_size": 20, "batch_steps": 34_000},
}


def idle_cores_hint(
    cores: int, batch_size: int, where: str = "usable cores", batch_steps: int = 0
) -> str:
    """One line for ``--num-envs auto`` when ``cores`` outnumber a batch's episodes
    or slots (only ``batch_size`` actors can be busy at once); "" when they do not."""
    if cores <= batch_size:
        return ""
    if batch_steps:  # the slots only share the steps out: more change nothing else
        return (
            f"note: {batch_size} slots keep {batch_size} of {cores} {where} busy; "
            f"--batch-size {cores} keeps all busy, with the same {batch_steps:,} steps a batch"
        )
    wide = PRESETS["many-cores"]["batch_size"]
    episodes = "episode" if batch_size == 1 else "episodes"
    head = f"note: a batch of {batch_size} {episodes} keeps {batch_size} of {cores} {where} busy"
    if batch_size < wide:
        return f"{head}; --preset many-cores (batch {wide}) keeps {min(cores, wide)} busy"
    # Batches above 20 were slower per emulator step in the sweep, so say so.
    return (
        f"{head}; a larger --batch-size uses more, but batch 40 needed more steps to a "
        "running reward of -10 (bench/results/learning.md)"
    )


#: Settings a resume takes from the checkpoint unless given again.
RESTORED = (
    "hidden",
    "batch_size",
    "batch_steps",
    "batch_steps_from",
    "learning_rate",
    "lr_end",
    "lr_end_at",
    "entropy_bonus",
    "standardize",
    "gamma",
    "decay_rate",
    "seed",
    "env_id",
    "dtype",
    "episodes",
    "checkpoint_every",
    "keep",
    "video_every",
    "tensorboard",
)


def flag(name: str) -> str:
    """A setting's flag without the dashes: ``learning_rate`` -> ``lr``."""
    return "lr" if name == "learning_rate" else name.replace("_", "-")


class ConfigError(ValueError):
    """A setting is out of range; the message says which and what to use."""


def check_number(
    flag: str,
    value: object,
    low: float,
    high: float | None = None,
    *,
    integer: bool = True,
    above: bool = False,
    note: str = "",
) -> None:
    """Raise ConfigError unless ``value`` is a finite number in range; the one
    bounds check of every numeric flag of every command.

    Args:
        flag: the flag as the user typed it, e.g. ``"--scale"``.
        low, high: the allowed range, ``low`` included unless ``above``;
            ``high`` (always included) None for no upper bound.
        integer: the value must be an int (bools are not).
        note: said after the range, e.g. ``" (0: off)"``.

    Raises:
        ConfigError: e.g. "--scale must be an integer from 1 to 8, got 1000".
    """
    if integer:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if high is not None:
            allowed = f"an integer from {low} to {high}"
        else:
            allowed = "a positive integer" if low == 1 else f"an integer >= {low}"
    else:
        # nan fails every comparison below; inf is refused even without an upper bound.
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)  # type: ignore[arg-type]
        if high is not None:
            allowed = f"in ({low:g}, {high:g}]" if above else f"from {low:g} to {high:g}"
        else:
            allowed = f"a finite number {'>' if above else '>='} {low:g}"
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > low if above else v >= low) and (high is None or v <= high)
    if not ok:
        raise ConfigError(f"{flag} must be {allowed}{note}, got {value!r}")


@dataclass
class TrainConfig:
    """Hyperparameters and run settings. Defaults follow Karpathy's pg-pong.py.

    ``dtype`` defaults to float32: it halves memory and roughly doubles update
    speed on the CPU and is the fast path on GPUs; its gradients agree with
    float64 to about 1e-4 (tests/test_math.py). float64 is there for exact
    comparison with the NumPy tutorial's arithmetic.
    """

    # Algorithm
    hidden: int = 200  # H, hidden units
    batch_size: int = 10  # episodes per RMSProp update; with batch_steps, slots
    # Emulator steps per update, in whole points (slot_share.py); 0 = batches of
    # batch_size whole episodes, Karpathy's and the tutorial's.
    batch_steps: int = 0
    # With batch_steps: whole-episode batches while the running reward is below
    # this, batches of steps while it is at or above (a dip below switches back;
    # the rule needs no state of its own, so resumes stay exact). None: steps
    # throughout.
    batch_steps_from: float | None = None
    learning_rate: float = 1e-4
    # A schedule (None: none): the rate goes linearly from learning_rate at a
    # running reward of -21 to lr_end at lr_end_at, and stays there above it.
    lr_end: float | None = None
    lr_end_at: float = 0.0
    # beta of an entropy bonus, an addition to REINFORCE (update.py); 0 = none.
    entropy_bonus: float = 0.0
    # Returns standardised per episode (Karpathy's; per piece of one in a batch
    # of steps) or over the whole batch.
    standardize: str = "episode"
    gamma: float = 0.99  # reward discount
    decay_rate: float = 0.99  # RMSProp decay of the squared-gradient cache
    seed: int = 0
    # Environment. Pong-v0 is the tutorial's env: a frameskip drawn from 2..4 and
    # sticky actions (p=0.25), so published learning curves compare directly.
    env_id: str = "Pong-v0"
    # Rollout actors (one process each); "auto" = the usable cores. Episodes do not
    # depend on it (workers.py), so it only changes speed.
    num_envs: int | str = "auto"
    # Where the actors run: "processes" on this machine, or "ray" actors on a local
    # Ray instance or, with ray_address, an existing cluster (ray_pool.py).
    actors: str = "processes"
    ray_address: str | None = None
    # Run
    episodes: int = 10_000  # total episodes (including those before a resume)
    device: str = "auto"
    dtype: str = "float32"
    checkpoint_every: int = 50  # episodes
    keep: int = 1  # how many checkpoints to keep
    video_every: int = 0  # episodes between training videos; 0 = none
    tensorboard: bool = False  # TensorBoard event files in the run's tb/
    # Where: the run's folder (None: a new one under runs/) and the checkpoint
    # resumed. Never saved in a checkpoint (run_folder.py).
    run: str | None = None
    resume: str | None = None

    def validate(self, check_env: bool = True) -> TrainConfig:
        """Raise ConfigError naming the first bad value; return self when all are good.

        Runs before any work (and on settings read from a checkpoint, with
        ``check_env=False`` there, since a resume may name a new env id).

        Args:
            check_env: also look the env id up in Gymnasium's registry (cheap:
                no emulator is made), so a typo fails now, not after start-up.
        """
        check_number("--batch-size", self.batch_size, 1, MAX_BATCH_SIZE)
        check_number(
            "--batch-steps", self.batch_steps, 0, MAX_BATCH_STEPS, note=" (0: whole episodes)"
        )
        if self.batch_steps_from is not None:
            check_number("--batch-steps-from", self.batch_steps_from, -21, 21, integer=False)
            if not self.batch_steps:
                raise ConfigError("--batch-steps-from needs --batch-steps, the batch it turns to")
        if 0 < self.batch_steps < self.batch_size:
            raise ConfigError(
                f"--batch-steps {self.batch_steps} gives each of the {self.batch_size} slots "
                f"(--batch-size) no step; give at least {self.batch_size}, or a smaller "
                "--batch-size"
            )
        positive_ints = {
            "episodes": self.episodes,
            "hidden": self.hidden,
            "checkpoint-every": self.checkpoint_every,
            "keep": self.keep,
        }
        for name, value in positive_ints.items():
            check_number(f"--{name}", value, 1)
        if self.num_envs != "auto" and not (
            isinstance(self.num_envs, int)
            and not isinstance(self.num_envs, bool)
            and 0 < self.num_envs <= MAX_NUM_ENVS
        ):
            raise ConfigError(
                f"--num-envs must be auto or an integer from 1 to {MAX_NUM_ENVS}, "
                f"got {self.num_envs!r}"
            )
        # inf would turn the first update's weights into inf/NaN.
        check_number("--lr", self.learning_rate, 0, integer=False, above=True)
        if self.lr_end is not None:
            check_number("--lr-end", self.lr_end, 0, integer=False, above=True)
        check_number("--lr-end-at", self.lr_end_at, -21, 21, integer=False, above=True)
        check_number("--entropy-bonus", self.entropy_bonus, 0, 1, integer=False)
        if self.standardize not in STANDARDIZE:
            raise ConfigError(
                f"--standardize must be one of {', '.join(STANDARDIZE)}, got {self.standardize!r}"
            )
        for name, value in (("gamma", self.gamma), ("decay-rate", self.decay_rate)):
            check_number(f"--{name}", value, 0, 1, integer=False, above=True)
        self._check_actors()
        if self.device not in DEVICES:
            raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        check_number("--seed", self.seed, 0)
        if check_env:
            check_env_id(self.env_id)
        check_number("--video-every", self.video_every, 0, note=" (0: off)")
        if not isinstance(self.tensorboard, bool):
            raise ConfigError(f"--tensorboard is on or off, got {self.tensorboard!r}")
        return self

    def quota_at(self, running_reward: float, episodes: int) -> int | None:
        """Steps each slot plays at least in the next batch, or None for whole
        episodes, after ``episodes`` episodes at ``running_reward``
        (``--batch-steps``, from ``--batch-steps-from`` on)."""
        started = self.batch_steps_from is None or (
            episodes > 0 and running_reward >= self.batch_steps_from
        )
        return slot_quota(self.batch_steps, self.batch_size) if started else None

    def learning_rate_at(self, running_reward: float, episodes: int) -> float:
        """The learning rate of the next update, after ``episodes`` episodes
        whose running reward is ``running_reward`` (``--lr-end``'s schedule)."""
        if self.lr_end is None or episodes == 0:
            return self.learning_rate
        done = min(max((running_reward + 21) / (self.lr_end_at + 21), 0.0), 1.0)
        return self.learning_rate + (self.lr_end - self.learning_rate) * done

    def num_actors(self, cores: int | None = None, where: str = "usable cores") -> tuple[int, str]:
        """How many rollout actors to start, and a note ("" for none): when that is
        not ``num_envs``, or, for ``auto``, when cores would stay idle.

        ``auto`` takes ``cores`` (default: this process's usable cores; a Ray
        cluster's CPUs for actors there). Never more than ``batch_size``: a
        batch has that many episodes (or slots), so further actors could only wait.
        """
        cores = usable_cores() if cores is None else cores
        if self.num_envs == "auto":
            hint = idle_cores_hint(cores, self.batch_size, where, self.batch_steps)
            return min(cores, self.batch_size), hint
        wanted = int(self.num_envs)
        if wanted > self.batch_size:
            n = self.batch_size
            unit = "slot" if self.batch_steps else "episode"
            return n, (
                f"note: {n} actor{'s' if n > 1 else ''}, not {wanted}: a batch has {n} "
                f"{unit}{'s' if n > 1 else ''}; a larger --batch-size keeps more cores busy"
            )
        if wanted > cores:
            return wanted, (
                f"note: {wanted} actors share {cores} {where}; --num-envs auto starts one per core"
            )
        return wanted, ""

    def _check_actors(self) -> None:
        if self.actors not in ACTORS:
            raise ConfigError(f"--actors must be one of {', '.join(ACTORS)}, got {self.actors!r}")
        if self.ray_address is None:
            return
        if self.actors != "ray":
            raise ConfigError("--ray-address is for Ray actors; add --actors ray")
        if not isinstance(self.ray_address, str) or not _RAY_ADDRESS.fullmatch(self.ray_address):
            raise ConfigError(
                "--ray-address must be HOST:PORT (the address `ray start --head` prints), "
                f"ray://HOST:PORT or auto, got {self.ray_address!r}"
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Settings from ``to_json`` text; unknown keys (newer versions) are ignored.

        Raises:
            ValueError, TypeError, AttributeError: the text is not such an object.
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"settings are a JSON {type(data).__name__}, not an object")
        known = {f.name for f in dataclasses.fields(cls)}
        if isinstance(data.get("tensorboard"), str):  # older versions: a directory or ""
            data["tensorboard"] = bool(data["tensorboard"])
        return cls(**{k: v for k, v in data.items() if k in known})


def check_suffix(path: str | os.PathLike[str], suffix: str, what: str) -> None:
    """Raise ConfigError unless ``path`` ends in ``suffix`` (one rule for every
    file a command writes, e.g. checkpoints and agent files in ``.npz``)."""
    if not os.fspath(path).endswith(suffix):
        raise ConfigError(f"{what} must end in {suffix}, got {os.fspath(path)!r}")


@functools.cache
def _registered_pong_ids() -> frozenset[str]:
    """Register the ALE envs (once a process: every emulator is made after this)."""
    import ale_py
    import gymnasium as gym

    # ale-py prints a banner to stderr on every ROM load ("A.L.E: Arcade Learning
    # Environment ... [Powered by Stella]"), which lands on the progress bar's
    # line; only its errors are worth showing.
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    gym.register_envs(ale_py)
    return frozenset(k for k in gym.registry if "Pong" in k and "Doubles" not in k)


def check_env_id(env_id: str) -> None:
    """Raise ConfigError unless ``env_id`` is a registered (non-Doubles) Pong env.

    A registry lookup only; the same test ``rollout.make_env`` applies later.
    """
    pongs = _registered_pong_ids()
    if env_id not in pongs:
        shown = ", ".join(sorted(pongs))
        raise ConfigError(f"--env-id {env_id!r} is not a known Pong env; use one of: {shown}")
