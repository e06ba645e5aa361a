"""Evaluation: play N episodes from a checkpoint and summarise the scores.

Evaluation runs on the CPU whatever device trained the checkpoint: the
emulator is on the CPU and the policy is evaluated one frame at a time, which
a GPU would only slow down with per-step transfers. Checkpoints hold host
NumPy weights (``checkpoint.save`` moves them off the device), so a checkpoint
written by a GPU run evaluates on any machine, and the other way round.

An episode is one game to 21 points. It is a *win* when the agent scored more
points than the built-in opponent (the agent reached 21 first); its *score* is
agent points minus opponent points, -21..21, the same number training logs as
an episode's reward.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pongxp import checkpoint
from pongxp.config import check_number
from pongxp.rollout import Actor, EpisodeStats


@dataclass(frozen=True)
class EpisodeResult:
    """One evaluation episode."""

    points_for: int  # points the agent won, 0..21
    points_against: int  # points the built-in opponent won, 0..21
    steps: int  # agent steps (each 2-4 emulator frames on Pong-v0)

    @property
    def score(self) -> int:
        return self.points_for - self.points_against

    @property
    def won(self) -> bool:
        return self.points_for > self.points_against


@dataclass
class Evaluation:
    """All episodes of one evaluation and how they were played."""

    checkpoint: str
    env_id: str
    seed: int
    greedy: bool
    trained_episodes: int  # the checkpoint's episode counter
    episodes: list[EpisodeResult] = field(default_factory=list)

    def scores(self) -> np.ndarray:
        """(N,) int64 per-episode scores."""
        return np.asarray([e.score for e in self.episodes], dtype=np.int64)

    def summary(self) -> dict[str, float | int]:
        """Mean, population std (ddof 0), min and max score; wins and win rate."""
        s = self.scores()
        wins = sum(e.won for e in self.episodes)
        return {
            "episodes": len(self.episodes),
            "mean": float(s.mean()),
            "std": float(s.std()),
            "min": int(s.min()),
            "max": int(s.max()),
            "wins": wins,
            "win_rate": wins / len(self.episodes),
        }

    def to_json(self) -> dict[str, object]:
        return {
            "checkpoint": self.checkpoint,
            "env_id": self.env_id,
            "seed": self.seed,
            "greedy": self.greedy,
            "trained_episodes": self.trained_episodes,
            "scores": self.scores().tolist(),
            **self.summary(),
        }


def load_actor(
    path: str | os.PathLike[str], seed: int, env_id: str | None = None
) -> tuple[Actor, checkpoint.Checkpoint]:
    """An Actor on the CPU holding a checkpoint's weights.

    Args:
        seed: seeds the emulator and the action sampler; same seed, same games.
        env_id: play this env instead of the one the checkpoint was trained on.

    Raises:
        CheckpointError: one line, for a missing or unreadable file.
        EnvError: unknown env id.
    """
    import array_api_compat.numpy as xp  # actors always run on the host

    ckpt = checkpoint.load(path)
    w1, w2 = ckpt.params["W1"], ckpt.params["W2"]
    actor = Actor(env_id or ckpt.config.env_id, seed, xp, dtype=str(w1.dtype))
    actor.set_weights(w1, w2)
    return actor, ckpt


def evaluate(
    path: str | os.PathLike[str],
    episodes: int = 10,
    greedy: bool = False,
    seed: int = 0,
    env_id: str | None = None,
    on_episode: Callable[[int, EpisodeResult, EpisodeStats], None] | None = None,
) -> Evaluation:
    """Play ``episodes`` games with a checkpoint's policy.

    Reproducible: the same checkpoint, seed, env and ``greedy`` give the same
    games (Pong-v0 is still random under greedy actions, through its random
    frameskip and sticky actions, which the seed fixes).

    Args:
        greedy: take the more likely action instead of sampling from the policy.
        on_episode: called after each episode with (index from 1, result, stats).

    Raises:
        ConfigError: episodes < 1 or seed < 0. CheckpointError, EnvError: see ``load_actor``.
    """
    check_number("--episodes", episodes, 1)
    check_number("--seed", seed, 0)
    actor, ckpt = load_actor(path, seed, env_id)
    result = Evaluation(
        checkpoint=str(Path(path)),
        env_id=env_id or ckpt.config.env_id,
        seed=seed,
        greedy=greedy,
        trained_episodes=ckpt.episode,
    )
    try:
        for index in range(1, episodes + 1):
            played, stats = actor.play(greedy=greedy)
            rewards = played.rewards
            episode = EpisodeResult(
                points_for=int(np.count_nonzero(rewards > 0)),
                points_against=int(np.count_nonzero(rewards < 0)),
                steps=stats.steps,
            )
            result.episodes.append(episode)
            if on_episode is not None:
                on_episode(index, episode, stats)
    finally:
        actor.close()
    return result


def format_summary(result: Evaluation) -> str:
    """The lines ``python -m pongxp evaluate`` prints at the end."""
    s = result.summary()
    actions = "greedy" if result.greedy else "sampled"
    return "\n".join(
        [
            f"{result.checkpoint} (trained {result.trained_episodes} episodes) on "
            f"{result.env_id}, {s['episodes']} episodes, {actions} actions, seed {result.seed}",
            f"score  mean {s['mean']:+.2f}  std {s['std']:.2f}  "
            f"min {s['min']:+d}  max {s['max']:+d}",
            f"win rate {s['win_rate']:.1%} ({s['wins']} of {s['episodes']} games "
            "against the built-in opponent)",
        ]
    )
