"""Playing episodes on the CPU: the ALE emulator plus the policy as actor.

An ``Actor`` owns one emulator and one action-sampling generator. It is seeded
once; later episodes continue the emulator's and the generator's streams (a
seeded reset reloads the ROM, ~120 ms), and ``state()``/``restore()`` capture
both so a resumed run replays exactly what an uninterrupted one would.
"""

from __future__ import annotations

import base64
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from pongxp.batch import HostBatch
from pongxp.config import INPUT_SIZE
from pongxp.policy import step_up_probability
from pongxp.preprocess import frame_difference, preprocess

UP, DOWN = 2, 3  # Pong's minimal action set: 2 moves the paddle up, 3 down


class EnvError(ValueError):
    """The env id cannot be made into a Pong environment."""


def make_env(env_id: str, render_mode: str | None = None) -> Any:
    """A Gymnasium ALE environment, with the ALE envs registered."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    if env_id not in gym.registry:
        pongs = sorted(k for k in gym.registry if "Pong" in k and "Doubles" not in k)
        raise EnvError(f"unknown env id {env_id!r}; Pong ids are: {', '.join(pongs)}")
    if "Pong" not in env_id:
        raise EnvError(f"env id {env_id!r} is not Pong; the preprocessing is Pong's")
    with warnings.catch_warnings():
        # Pong-v0 is chosen on purpose (the tutorial's env); gymnasium calls it old.
        warnings.filterwarnings("ignore", message=".*out of date.*")
        env = gym.make(env_id, render_mode=render_mode, disable_env_checker=True)
    shape = env.observation_space.shape
    if shape != (210, 160, 3):
        env.close()
        raise EnvError(f"env {env_id!r} gives observations of shape {shape}; need RGB 210x160")
    return env


@dataclass
class EpisodeStats:
    reward: int
    steps: int
    seconds: float


class Actor:
    """One emulator and one sampler; plays whole episodes with given weights."""

    def __init__(self, env_id: str, seed: int, xp: Any, dtype: str = "float32") -> None:
        self.env = make_env(env_id)
        self.xp = xp
        self.dtype = dtype
        self.rng = np.random.default_rng(seed)
        self.env.reset(seed=seed)  # the only seeded reset: loads the ROM once
        self._needs_reset = True  # reset() at the start of the next episode
        self.w1_t: Any = None
        self.w2: Any = None

    def set_weights(self, w1: np.ndarray, w2: np.ndarray) -> None:
        """Host weights for the next episodes; W1 is kept transposed for row gathers."""
        self.w1_t = np.ascontiguousarray(w1.T, dtype=self.dtype)
        self.w2 = np.ascontiguousarray(w2, dtype=self.dtype)

    def play(self, greedy: bool = False, on_frame: Any = None) -> tuple[HostBatch, EpisodeStats]:
        """Play one full episode with the current weights.

        Args:
            greedy: take the more likely action instead of sampling.
            on_frame: optional callback(screen, cols, signs) per step, for video.

        Returns:
            The episode as a HostBatch, and its reward, length and wall time.
        """
        if self.w1_t is None:
            raise RuntimeError("set_weights() before play()")
        start = time.perf_counter()
        xp, rng, env = self.xp, self.rng, self.env
        screen, _ = env.reset()
        previous = preprocess(screen)
        indptr, cols_list, signs_list, ups, rewards = [0], [], [], [], []
        nnz = 0
        while True:
            current = preprocess(screen)
            cols, signs = frame_difference(current, previous)
            previous = current
            p_up = float(step_up_probability(self.w1_t, self.w2, cols, signs, xp))
            up = p_up >= 0.5 if greedy else rng.random() < p_up
            if on_frame is not None:
                on_frame(screen, cols, signs)
            screen, reward, terminated, truncated, _ = env.step(UP if up else DOWN)
            nnz += cols.shape[0]
            indptr.append(nnz)
            cols_list.append(cols)
            signs_list.append(signs)
            ups.append(up)
            rewards.append(reward)
            if terminated or truncated:
                break
        episode = HostBatch(
            indptr=np.asarray(indptr, dtype=np.int32),
            cols=np.concatenate(cols_list),
            signs=np.concatenate(signs_list),
            ups=np.asarray(ups, dtype=np.uint8),
            rewards=np.asarray(rewards, dtype=np.int8),
            lengths=np.array([len(ups)], dtype=np.int64),
        )
        stats = EpisodeStats(episode.total_reward, len(ups), time.perf_counter() - start)
        return episode, stats

    def state(self) -> dict[str, Any]:
        """JSON-able snapshot of the emulator (RNG included) and both generators."""
        unwrapped = self.env.unwrapped
        ale_state = unwrapped.ale.cloneState(include_rng=True).serialize()
        return {
            "ale": base64.b64encode(ale_state).decode("ascii"),
            "env_rng": unwrapped.np_random.bit_generator.state,
            "action_rng": self.rng.bit_generator.state,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Return to a ``state()`` snapshot taken between episodes."""
        import ale_py

        unwrapped = self.env.unwrapped
        unwrapped.ale.restoreState(ale_py.ALEState(base64.b64decode(state["ale"])))
        unwrapped.np_random.bit_generator.state = state["env_rng"]
        self.rng.bit_generator.state = state["action_rng"]

    def close(self) -> None:
        self.env.close()


assert INPUT_SIZE == 80 * 80
