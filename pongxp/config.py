"""Every setting of a training run, in one place, with its checks."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

#: Screen pixels after preprocessing (80 x 80).
INPUT_SIZE = 6400

DEVICES = ("cpu", "gpu", "auto")
DTYPES = ("float32", "float64")


class ConfigError(ValueError):
    """A setting is out of range; the message says which and what to use."""


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
    batch_size: int = 10  # episodes per RMSProp update
    learning_rate: float = 1e-4
    gamma: float = 0.99  # reward discount
    decay_rate: float = 0.99  # RMSProp decay of the squared-gradient cache
    seed: int = 0
    # Environment. Pong-v0 is the tutorial's env: a frameskip drawn from 2..4 and
    # sticky actions (p=0.25), so published learning curves compare directly.
    env_id: str = "Pong-v0"
    num_envs: int = 1  # parallel rollout processes
    # Run
    episodes: int = 10_000  # total episodes (including those before a resume)
    device: str = "auto"
    dtype: str = "float32"
    checkpoint: str = "runs/pong.npz"
    checkpoint_every: int = 50  # episodes
    keep: int = 1  # how many checkpoints to keep
    metrics: str = "runs/pong.jsonl"
    resume: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad value; return self when all are good."""
        positive_ints = {
            "episodes": self.episodes,
            "batch-size": self.batch_size,
            "hidden": self.hidden,
            "num-envs": self.num_envs,
            "checkpoint-every": self.checkpoint_every,
            "keep": self.keep,
        }
        for name, value in positive_ints.items():
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"--{name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"--lr must be > 0, got {self.learning_rate!r}")
        for name, value in (("gamma", self.gamma), ("decay-rate", self.decay_rate)):
            if not 0 < value <= 1:
                raise ConfigError(f"--{name} must be in (0, 1], got {value!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed!r}")
        return self

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})
