"""Every setting of a training run, in one place, with its checks."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from dataclasses import dataclass, field
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
#: How a gradient becomes a step (``optim``): Karpathy's RMSProp, or Adam.
OPTIMIZERS = ("rmsprop", "adam")


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
    # A larger batch also changes how the run learns: say where that is measured.
    return (
        f"{head}; a larger --batch-size uses more, and changes how the run learns "
        "(bench/README.md: learning speed)"
    )


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


def setting(
    default: Any,
    help: str,
    *,
    group: str = "algorithm",
    kind: type | None = None,
    low: float | None = None,
    high: float | None = None,
    above: bool = False,
    note: str = "",
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    restored: bool = True,
    hparam: bool = False,
) -> Any:
    """Declare one setting of ``TrainConfig``: everything else is derived from this.

    The flag and its ``--help`` (``cli``), its check (``TrainConfig.validate``,
    one line naming the flag), the list a resume restores from the checkpoint
    (``RESTORED``), TensorBoard's hparams (``HPARAMS``), the run's manifest and
    the options table of the docs (``options_table``) all read it.

    Args:
        default: the value when the flag is not given (None: off, or unset).
        help: one line: what the flag does and how to choose it (no benchmark figures).
        group: the ``--help`` section: algorithm, environment, device or run.
        kind: int, float, str or bool; by default the default's type.
        low, high, above, note: the bounds ``check_number`` checks (None: no bound).
        choices: the values allowed (the parser refuses others).
        flag: the flag's name without dashes, where it is not the field's.
        aliases: other names of the flag, e.g. ``--learning-rate``.
        restored: a resume takes it from the checkpoint unless it is given again
            (False: where the run runs, e.g. --device, and where its files are).
        hparam: shown in TensorBoard's HParams tab, to compare runs by.
    """
    metadata = {
        "help": help,
        "group": group,
        "kind": kind or type(default),
        "low": low,
        "high": high,
        "above": above,
        "note": note,
        "choices": choices,
        "metavar": metavar,
        "flag": flag,
        "aliases": aliases,
        "restored": restored,
        "hparam": hparam,
    }
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Hyperparameters and run settings, each declared once (``setting``).
    Defaults follow Karpathy's pg-pong.py; ``dtype`` defaults to float32, whose
    gradients agree with float64 to about 1e-4 (tests/test_math.py)."""

    # Algorithm
    hidden: int = setting(
        200, "hidden units H; more can learn finer features, each update costs more", low=1,
        hparam=True,
    )  # fmt: skip
    batch_size: int = setting(
        10, "episodes per update; with --batch-steps, the slots that share a batch's "
        "steps, one emulator each: give the number of cores or a multiple of it", low=1,
        high=MAX_BATCH_SIZE, hparam=True,
    )  # fmt: skip
    batch_steps: int = setting(
        0, "make a batch S emulator steps of whole points instead of --batch-size whole "
        "episodes: each slot plays at least S / batch-size steps, stops at the end of a point "
        "and carries its game into the next batch, so updates come at a steady rate however "
        "long the games get; S is the learning setting (bench/README.md)", low=0,
        high=MAX_BATCH_STEPS, note=" (0: whole episodes)", metavar="S", hparam=True,
    )  # fmt: skip
    batch_steps_from: float | None = setting(
        None, "with --batch-steps: batches of --batch-size whole episodes while the running "
        "reward is below R, batches of steps while it is at R or above (default: steps "
        "throughout)", kind=float, low=-21, high=21, metavar="R",
    )  # fmt: skip
    learning_rate: float = setting(
        1e-4, "the optimizer's learning rate; larger learns faster until the updates overshoot",
        flag="lr", aliases=("--learning-rate",), low=0, above=True, hparam=True,
    )  # fmt: skip
    lr_end: float | None = setting(
        None, "a learning-rate schedule: the rate goes linearly from --lr at a running reward "
        "of -21 to LR at --lr-end-at, and stays LR above it (default: none)", kind=float,
        low=0, above=True, metavar="LR",
    )  # fmt: skip
    lr_end_at: float = setting(
        0.0, "the running reward at which --lr-end is reached; only with --lr-end, given "
        "or resumed", low=-21, high=21, above=True, metavar="R",
    )  # fmt: skip
    entropy_bonus: float = setting(
        0.0, "an addition to REINFORCE: also climb BETA x the policy's entropy, which keeps "
        "it from turning deterministic too soon; 0: none", low=0, high=1, metavar="BETA",
        hparam=True,
    )  # fmt: skip
    standardize: str = setting(
        "episode", "standardise the returns by each episode's mean and spread (Karpathy's; "
        "with --batch-steps, each piece of an episode a slot played in the batch) or by the "
        "whole batch's", choices=STANDARDIZE, hparam=True,
    )  # fmt: skip
    gamma: float = setting(0.99, "reward discount factor", low=0, high=1, above=True, hparam=True)
    decay_rate: float = setting(
        0.99, "RMSProp decay of the squared-gradient cache (--optimizer rmsprop only)", low=0,
        high=1, above=True, hparam=True,
    )  # fmt: skip
    optimizer: str = setting(
        "rmsprop", "how the gradient becomes a step: rmsprop (Karpathy's) or adam, an addition "
        "to the tutorial's method (moments with bias correction, beta1 0.9, beta2 0.999); "
        "Adam averages the gradient over updates, so where it changes sign from batch to "
        "batch (as a policy gradient's noise does) its step is several times smaller than "
        "RMSProp's at the same --lr: give it a larger --lr (docs/training.md); a resume "
        "that changes it starts the new optimizer's state from zero", choices=OPTIMIZERS,
        hparam=True,
    )  # fmt: skip
    clip_norm: float = setting(
        0.0, "an addition to the tutorial's method: scale the gradient down to a global L2 norm "
        "of C (all weights together) when it is longer, before the optimizer's step; the "
        "gradient sums a batch's steps, so choose C from the norms/grad_* curves of "
        "--tensorboard (a little above their usual level clips only the outliers)", low=0,
        note=" (0: off)", metavar="C", hparam=True,
    )  # fmt: skip
    seed: int = setting(
        0, "seed for the weights, the emulators and the action sampling", low=0, hparam=True
    )
    # Environment. Pong-v0 is the tutorial's env: a frameskip drawn from 2..4 and
    # sticky actions (p=0.25), so published learning curves compare directly.
    env_id: str = setting(
        "Pong-v0", "the Gymnasium Pong id to play; Pong-v0 is the tutorial's (sticky actions, "
        "a random frameskip)", group="environment", hparam=True,
    )  # fmt: skip
    # Episodes do not depend on it (workers.py), so it only changes speed.
    num_envs: int | str = setting(
        "auto", "rollout actors, one emulator process each; auto = the cores this process may "
        "use (os.sched_getaffinity), at most --batch-size. The episodes played do not depend "
        "on it, only the speed", group="environment", restored=False,
    )  # fmt: skip
    actors: str = setting(
        "processes", "where the rollout actors run: processes on this machine, or ray actors "
        "(needs pongxp[ray]) on a local Ray instance or the cluster at --ray-address; the "
        "episodes are the same", group="environment", choices=ACTORS, restored=False,
    )  # fmt: skip
    ray_address: str | None = setting(
        None, "join the Ray cluster whose head is at ADDRESS (HOST:PORT, as `ray start "
        "--head` prints it; or auto), with --actors ray; --num-envs auto then starts one "
        "actor per cluster CPU (default: $RAY_ADDRESS if set, else a local Ray instance)",
        group="environment", kind=str, metavar="ADDRESS", restored=False,
    )  # fmt: skip
    device: str = setting(
        "auto", "where the update math runs: cpu, gpu (CuPy) or auto = gpu if usable; "
        "rollouts always run on the CPU", group="device", choices=DEVICES, restored=False,
    )  # fmt: skip
    dtype: str = setting(
        "float32", "float type of the math: float32 is the fast one; float64 reproduces the "
        "tutorial's arithmetic", group="device", choices=DTYPES,
    )  # fmt: skip
    # Run
    episodes: int = setting(
        10_000, "total episodes to reach, counting those before a resume; the run ends at "
        "exactly that many: no batch ends more than it still needs (with --batch-steps, each "
        "slot of the last batches stops at the end of its share of those, split over the "
        "slots)", group="run", low=1,
    )  # fmt: skip
    checkpoint_every: int = setting(
        50, "save after this many episodes; also at the end and on Ctrl-C/SIGTERM",
        group="run", low=1,
    )  # fmt: skip
    keep: int = setting(
        1, "checkpoints to keep: with N > 1 the newest N also as checkpoints/epNNNNNNNN.npz "
        "in the run folder, to go back to; lowering it deletes the older ones", group="run",
        low=1,
    )  # fmt: skip
    video_every: int = setting(
        0, "record a video of one extra episode (own emulator, same weights) each K episodes "
        "into the run's videos/; needs the video extra", group="run", low=0, note=" (0: off)",
        metavar="K",
    )  # fmt: skip
    tensorboard: bool = setting(
        False, "also write TensorBoard event files into the run's tb/ as it trains (global "
        "step: emulator steps); view every run with `tensorboard --logdir runs`; needs the "
        "tensorboard extra; --no-tensorboard stops it on a resume", group="run",
    )  # fmt: skip
    # Where (run_folder.py): never saved in a checkpoint, never restored.
    run: str | None = setting(
        None, "the folder this run writes everything into (run.json, checkpoint.npz, "
        "metrics.jsonl, tb/, videos/); new or empty (default: a new folder "
        "runs/<preset>-seed<seed>[-N], named on the first line)", group="run", kind=str,
        metavar="FOLDER", restored=False,
    )  # fmt: skip
    resume: str | None = setting(
        None, "continue the run in folder RUN in place, exactly: its settings and episode "
        "target unless given again. A kept checkpoint (RUN/checkpoints/epN.npz), --run NEW, "
        "or an older pongxp's .npz continue in a new folder that starts with its episodes",
        group="run", kind=str, metavar="RUN", restored=False,
    )  # fmt: skip

    def validate(self, check_env: bool = True) -> TrainConfig:
        """Raise ConfigError naming the first bad value; return self when all are good.

        Runs before any work (and on settings read from a checkpoint, with
        ``check_env=False`` there, since a resume may name a new env id).

        Args:
            check_env: also look the env id up in Gymnasium's registry (cheap:
                no emulator is made), so a typo fails now, not after start-up.
        """
        for f in SETTINGS:  # the bounds and choices each setting declares
            value, meta, name = getattr(self, f.name), f.metadata, "--" + flag(f.name)
            if value is None and f.default is None:
                continue  # off, or unset
            if meta["low"] is not None:
                check_number(
                    name, value, meta["low"], meta["high"], integer=meta["kind"] is int,
                    above=meta["above"], note=meta["note"],
                )  # fmt: skip
            elif meta["choices"] and value not in meta["choices"]:
                raise ConfigError(
                    f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}"
                )
            elif meta["kind"] is bool and not isinstance(value, bool):
                raise ConfigError(f"{name} is on or off, got {value!r}")
        # What no one setting's bounds say:
        if self.batch_steps_from is not None and not self.batch_steps:
            raise ConfigError("--batch-steps-from needs --batch-steps, the batch it turns to")
        if 0 < self.batch_steps < self.batch_size:
            raise ConfigError(
                f"--batch-steps {self.batch_steps} gives each of the {self.batch_size} slots "
                f"(--batch-size) no step; give at least {self.batch_size}, or a smaller "
                "--batch-size"
            )
        if self.num_envs != "auto" and not (
            isinstance(self.num_envs, int)
            and not isinstance(self.num_envs, bool)
            and 0 < self.num_envs <= MAX_NUM_ENVS
        ):
            raise ConfigError(
                f"--num-envs must be auto or an integer from 1 to {MAX_NUM_ENVS}, "
                f"got {self.num_envs!r}"
            )
        self._check_actors()
        if check_env:
            check_env_id(self.env_id)
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


#: Every setting, as declared on TrainConfig (``setting``), in order.
SETTINGS = tuple(f for f in dataclasses.fields(TrainConfig) if "help" in f.metadata)
#: Settings a resume takes from the checkpoint unless given again.
RESTORED = tuple(f.name for f in SETTINGS if f.metadata["restored"])
#: Settings shown in TensorBoard's HParams tab, to compare runs by.
HPARAMS = tuple(f.name for f in SETTINGS if f.metadata["hparam"])


def flag(name: str) -> str:
    """A setting's flag without the dashes: ``learning_rate`` -> ``lr``."""
    meta = TrainConfig.__dataclass_fields__[name].metadata
    return meta.get("flag") or name.replace("_", "-")


def shown_default(value: Any) -> str:
    """A default as ``--help`` and the docs show it: ``1e-4``, ``10000``, ``auto``."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def options_table() -> str:
    """The docs' options table (markdown), one row a setting, from the declarations."""
    rows = ["| flag | default | what it does |", "|---|---|---|"]
    for f in SETTINGS:
        default = "" if f.default is None or f.default is False else shown_default(f.default)
        text = f.metadata["help"].replace("|", "\\|")
        rows.append(f"| `--{flag(f.name)}` | {default} | {text} |")
    return "\n".join(rows)


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
