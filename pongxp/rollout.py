"""Playing episodes on the CPU: the ALE emulator plus the policy as actor.

An ``Actor`` owns one emulator and one action-sampling generator. Seeded once,
later episodes continue the emulator's and the generator's streams (a seeded
reset reloads the ROM, ~120 ms); ``state()``/``restore()`` capture both, so a
stream can be saved, resumed exactly, or moved to another actor
(``load_stream``, which is how ``workers.ActorPool`` shares slots out).

The emulator is the bottleneck (~270 us a step for Pong-v0 on a 2019 server
core), so the per-step work around it is kept small: the ALE is driven
directly, as ``AtariEnv.step`` would, but its screen is read as palette
indices (``PaletteFrames``) rather than the RGB array Gymnasium builds every
step; the policy reads only the few dozen input columns that changed; and
each step's arrays are appended to lists and joined once per episode.
"""

from __future__ import annotations

import base64
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from pongxp.batch import HostBatch
from pongxp.config import INPUT_SIZE, check_env_id
from pongxp.policy import step_up_probability
from pongxp.preprocess import PaletteFrames, frame_difference, preprocess

UP, DOWN = 2, 3  # Pong's minimal action set: 2 moves the paddle up, 3 down


class EnvError(ValueError):
    """The env id cannot be made into a Pong environment."""


def make_env(env_id: str, render_mode: str | None = None) -> Any:
    """A Gymnasium ALE Pong environment, with the ALE envs registered.

    Raises:
        ConfigError: ``env_id`` is not a registered Pong env.
        EnvError: it does not give 210x160 RGB screens.
    """
    import gymnasium as gym

    check_env_id(env_id)  # also registers the ALE envs
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


class _EpisodeRecord:
    """Per-step inputs, actions and rewards of one episode, collected cheaply."""

    def __init__(self) -> None:
        self.counts: list[int] = []
        self.cols: list[np.ndarray] = []
        self.signs: list[np.ndarray] = []
        self.ups: list[bool] = []
        self.rewards: list[float] = []

    def add(self, cols: np.ndarray, signs: np.ndarray, up: bool, reward: float) -> None:
        self.counts.append(cols.shape[0])
        self.cols.append(cols)
        self.signs.append(signs)
        self.ups.append(up)
        self.rewards.append(reward)

    def finish(self) -> HostBatch:
        """The episode as a HostBatch; int32 columns are made once here, not per step."""
        indptr = np.zeros(len(self.counts) + 1, dtype=np.int32)
        np.cumsum(self.counts, out=indptr[1:])
        return HostBatch(
            indptr=indptr,
            cols=np.concatenate(self.cols).astype(np.int32),
            signs=np.concatenate(self.signs).astype(np.int8, copy=False),
            ups=np.asarray(self.ups, dtype=np.uint8),
            rewards=np.asarray(self.rewards, dtype=np.int8),
            lengths=np.array([len(self.ups)], dtype=np.int64),
        )


def _supports_direct(env: Any) -> bool:
    """Whether ``env`` is ale-py's AtariEnv with the attributes the direct loop reads."""
    fs = getattr(env, "_frameskip", None)
    return (
        hasattr(env, "ale")
        and hasattr(env, "_action_set")
        and not getattr(env, "continuous", False)
        and getattr(env, "_obs_type", "rgb") == "rgb"
        and (isinstance(fs, int) or (isinstance(fs, tuple) and len(fs) == 2))
    )


class Actor:
    """One emulator and one sampler; plays whole episodes with given weights.

    Episodes are played by driving the ALE directly (see ``_play_direct``):
    the same frameskip draws, sticky actions, rewards and episode ends as
    ``env.step``, but the screen is read as palette indices instead of the RGB
    array that Gymnasium builds every step. If the env does not expose the
    ALE internals this relies on, ``env.step`` is used (``_play_gym``); both
    give the same episodes (tests compare them).
    """

    def __init__(self, env_id: str, seed: int, xp: Any, dtype: str = "float32") -> None:
        self.env = make_env(env_id)
        self.xp = xp
        self.dtype = dtype
        self.load_stream({"seed": seed})  # a seeded reset loads the ROM
        self.w1_t: Any = None
        self.w2: Any = None
        self.direct = _supports_direct(self.env.unwrapped)
        ale = self.env.unwrapped.ale if self.direct else None
        self._frames = PaletteFrames(ale.getScreen, ale.getScreenRGB) if ale is not None else None

    def set_weights(self, w1: np.ndarray, w2: np.ndarray) -> None:
        """Host weights for the next episodes; W1 is kept transposed for row gathers."""
        self.w1_t = np.ascontiguousarray(w1.T, dtype=self.dtype)
        self.w2 = np.ascontiguousarray(w2, dtype=self.dtype)

    def play(self, greedy: bool = False, on_frame: Any = None) -> tuple[HostBatch, EpisodeStats]:
        """Play one full episode with the current weights.

        Args:
            greedy: take the more likely action instead of sampling.
            on_frame: optional callback(screen, cols, signs) per step, for video:
                the (210, 160, 3) uint8 RGB screen the step's input was made
                from, and that input's int32 columns and int8 signs.

        Returns:
            The episode as a HostBatch, and its reward, length and wall time.
        """
        if self.w1_t is None:
            raise RuntimeError("set_weights() before play()")
        start = time.perf_counter()
        record = _EpisodeRecord()
        if self.direct:
            self._play_direct(record, greedy, on_frame)
        else:
            self._play_gym(record, greedy, on_frame)
        episode = record.finish()
        stats = EpisodeStats(episode.total_reward, episode.num_steps, time.perf_counter() - start)
        return episode, stats

    def _choose_up(self, cols: np.ndarray, signs: np.ndarray, greedy: bool) -> bool:
        """Sample (or, greedy, pick) the action for one step's input."""
        # No change on screen gives hidden = 0 and p = sigmoid(0) = 0.5 exactly,
        # so the forward pass can be skipped without changing anything.
        if cols.shape[0] == 0:
            p_up = 0.5
        else:
            p_up = float(step_up_probability(self.w1_t, self.w2, cols, signs, self.xp))
        return p_up >= 0.5 if greedy else bool(self.rng.random() < p_up)

    def _play_direct(self, record: _EpisodeRecord, greedy: bool, on_frame: Any) -> None:
        """The episode loop on the ALE itself; mirrors ``AtariEnv.reset``/``step``."""
        env = self.env.unwrapped
        ale, frames, skip = env.ale, self._frames, env._frameskip
        draw_skip = env.np_random.integers  # AtariEnv draws a stochastic frameskip here
        action_of = {True: env._action_set[UP], False: env._action_set[DOWN]}
        ale.reset_game()  # what env.reset() does without a seed
        frames.reset()
        while True:
            cols, signs = frames.step()
            up = self._choose_up(cols, signs, greedy)
            if on_frame is not None:
                on_frame(ale.getScreenRGB(), cols.astype(np.int32), signs)
            action = action_of[up]
            reward = 0
            for _ in range(skip if isinstance(skip, int) else int(draw_skip(*skip))):
                reward += ale.act(action, 1.0)
            record.add(cols, signs, up, reward)
            if ale.game_over(with_truncation=False) or ale.game_truncated():
                return

    def _play_gym(self, record: _EpisodeRecord, greedy: bool, on_frame: Any) -> None:
        """The episode loop through ``env.reset``/``env.step`` and the RGB rule."""
        screen, _ = self.env.reset()
        previous = preprocess(screen)
        while True:
            current = preprocess(screen)
            cols, signs = frame_difference(current, previous)
            previous = current
            up = self._choose_up(cols, signs, greedy)
            if on_frame is not None:
                on_frame(screen, cols, signs)
            screen, reward, terminated, truncated, _ = self.env.step(UP if up else DOWN)
            record.add(cols, signs, up, reward)
            if terminated or truncated:
                return

    def state(self) -> dict[str, Any]:
        """JSON-able snapshot of the emulator (RNG included) and both generators."""
        unwrapped = self.env.unwrapped
        ale_state = unwrapped.ale.cloneState(include_rng=True).serialize()
        return {
            "ale": base64.b64encode(ale_state).decode("ascii"),
            "env_rng": unwrapped.np_random.bit_generator.state,
            "action_rng": self.rng.bit_generator.state,
        }

    def load_stream(self, stream: dict[str, Any]) -> None:
        """Continue ``stream``: a ``state()`` snapshot, or ``{"seed": s}`` for a new
        stream, which seeds the emulator and the sampler from ``s``."""
        if "seed" in stream:
            self.rng = np.random.default_rng(stream["seed"])
            self.env.reset(seed=stream["seed"])
        else:
            self.restore(stream)

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
