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
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from pongxp.batch import HostBatch, stack
from pongxp.config import INPUT_SIZE, check_env_id
from pongxp.policy import step_up_probability
from pongxp.preprocess import PaletteFrames, frame_difference, preprocess
from pongxp.slot_share import share_ends

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
    """An episode's score and length, and the actor time it took in the call that
    ended it (all of it for ``Actor.play`` from a new game)."""

    reward: int
    steps: int
    seconds: float


@dataclass
class Share:
    """What one slot played in one batch (``slot_share``).

    Attributes:
        batch: its steps; ``batch.lengths`` has one entry per episode it
            played part of, in order, so the update standardises each piece
            of an episode on its own.
        ended: the episodes that ended in it, in order.
        ended_at: for each of those, the steps into the share at its end.
        seconds: actor time spent on it.
    """

    batch: HostBatch
    ended: list[EpisodeStats]
    ended_at: list[int]
    seconds: float


@dataclass
class _InProgress:
    """An episode under way: its score and length so far (saved with a pause),
    and the time spent on it since this actor took it up (not saved: streams
    hold no wall-clock time, so runs repeat bit for bit)."""

    reward: int = 0
    steps: int = 0
    seconds: float = 0.0
    last_action: int = 0  # the ALE action of its latest step (see ``Actor.restore``)


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


def pack_array(array: np.ndarray) -> dict[str, Any]:
    """A small array as JSON: dtype, shape and its bytes deflated and in base64
    (a paused game's two screens take ~1 KB instead of 67 KB)."""
    raw = zlib.compress(np.ascontiguousarray(array).tobytes(), 6)
    return {
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "data": base64.b64encode(raw).decode("ascii"),
    }


def unpack_array(packed: dict[str, Any]) -> np.ndarray:
    """The array ``pack_array`` packed.

    Raises:
        ValueError, TypeError, KeyError, zlib.error, binascii.Error: it is damaged.
    """
    raw = zlib.decompress(base64.b64decode(packed["data"], validate=True))
    dtype = np.dtype(packed["dtype"])
    if dtype.kind not in "iub":  # screens and tables only: never object arrays
        raise ValueError(f"unexpected dtype {dtype}")
    return np.frombuffer(raw, dtype=dtype).reshape(packed["shape"]).copy()


#: Frames of the last action played to set it as the one sticky actions repeat:
#: each has a 1 - p chance (p = 0.25 in Pong-v0) to take, so 16 leave a 0.25**16
#: (2e-10) chance that the first frame of a resumed game repeats NOOP instead.
_STICKY_FRAMES = 16


def _restore_sticky_action(ale: Any, saved: Any, last_action: int) -> None:
    """Make the emulator, restored to ``saved`` mid-game, repeat ``last_action``
    where sticky actions repeat the previous action, as the game it was saved
    from would.

    An ALE state does not hold that action (the emulator keeps its own last
    one across ``restoreState``), so an emulator restored mid-game would play
    on from whatever it played last. A reset sets it to NOOP; frames of
    ``last_action`` from ``saved`` (its RNG included, so the same sticky draws
    wherever this runs) then set it; ``saved`` is restored again after them.
    """
    ale.reset_game()
    ale.restoreState(saved)
    for _ in range(_STICKY_FRAMES):
        ale.act(last_action, 1.0)
    ale.restoreState(saved)


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
        self._episode: _InProgress | None = None  # the episode a batch of steps paused
        # What that episode goes on from: the emulator's frames (direct loop) or
        # the last screen and preprocessed frame (Gymnasium loop).
        self._paused: dict[str, np.ndarray] | None = None
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
        """Play one full episode with the current weights (a new one, or to its end
        the one a batch of steps paused).

        Args:
            greedy: take the more likely action instead of sampling.
            on_frame: optional callback(screen, cols, signs) per step, for video:
                the (210, 160, 3) uint8 RGB screen the step's input was made
                from, and that input's int32 columns and int8 signs.

        Returns:
            The episode's steps played in this call as a HostBatch, and its
            reward, length and time (all of it).
        """
        share = self.play_share(None, greedy, on_frame)
        return share.batch, share.ended[0]

    def play_share(
        self,
        quota: int | None,
        greedy: bool = False,
        on_frame: Any = None,
        episodes: int | None = None,
    ) -> Share:
        """Play a slot's share of a batch: where it ends is ``slot_share.share_ends``.

        Args:
            quota: ``slot_share.slot_quota``'s steps; None for one whole episode.
            greedy, on_frame: as for ``play``.
            episodes: end the share at the end of its ``episodes``-th episode,
                quota or not (``slot_share.episode_allowances``); None: no limit.
        """
        if self.w1_t is None:
            raise RuntimeError("set_weights() before play()")
        start = time.perf_counter()
        pieces: list[HostBatch] = []
        ended: list[EpisodeStats] = []
        ended_at: list[int] = []
        played = 0
        while True:
            piece_start = time.perf_counter()
            fresh = self._episode is None
            if self._episode is None:
                self._episode = _InProgress()
            record = _EpisodeRecord()
            loop = self._play_direct if self.direct else self._play_gym
            # Weights a too-large learning rate blew up overflow here, in the rollout
            # before the next update: that update's finiteness check says so in one
            # line (naming the flag), not NumPy's RuntimeWarnings from a worker.
            with np.errstate(over="ignore", invalid="ignore"):
                share_over = loop(record, greedy, on_frame, quota, played, fresh)
            piece = record.finish()
            pieces.append(piece)
            played += piece.num_steps
            episode = self._episode
            episode.reward += piece.total_reward
            episode.steps += piece.num_steps
            episode.seconds += time.perf_counter() - piece_start
            if self._paused is None:  # the episode ended
                ended.append(EpisodeStats(episode.reward, episode.steps, episode.seconds))
                ended_at.append(played)
                self._episode = None
                if episodes is not None and len(ended) >= episodes:
                    share_over = True  # the run needs no more episodes from this slot
            if share_over:
                batch = pieces[0] if len(pieces) == 1 else stack(pieces)
                return Share(batch, ended, ended_at, time.perf_counter() - start)

    def _choose_up(self, cols: np.ndarray, signs: np.ndarray, greedy: bool) -> bool:
        """Sample (or, greedy, pick) the action for one step's input."""
        # No change on screen gives hidden = 0 and p = sigmoid(0) = 0.5 exactly,
        # so the forward pass can be skipped without changing anything.
        if cols.shape[0] == 0:
            p_up = 0.5
        else:
            p_up = float(step_up_probability(self.w1_t, self.w2, cols, signs, self.xp))
        return p_up >= 0.5 if greedy else bool(self.rng.random() < p_up)

    def _play_direct(
        self,
        record: _EpisodeRecord,
        greedy: bool,
        on_frame: Any,
        quota: int | None,
        played: int,
        fresh: bool,
    ) -> bool:
        """The episode loop on the ALE itself; mirrors ``AtariEnv.reset``/``step``.

        Plays into ``record`` until the episode ends or the share does
        (``played`` steps of it are already played); a new episode when
        ``fresh``, else the paused one. Returns whether the share ended; leaves
        ``self._paused`` set if the episode goes on.
        """
        env = self.env.unwrapped
        ale, frames, skip = env.ale, self._frames, env._frameskip
        draw_skip = env.np_random.integers  # AtariEnv draws a stochastic frameskip here
        action_of = {True: env._action_set[UP], False: env._action_set[DOWN]}
        if fresh:
            ale.reset_game()  # what env.reset() does without a seed
            frames.reset()
        self._paused = None
        steps = played
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
            steps += 1
            over = ale.game_over(with_truncation=False) or ale.game_truncated()
            share_over = share_ends(steps, quota, reward, over)
            if share_over or over:
                if not over:  # only a paused game needs its last action (state())
                    self._episode.last_action = action.value
                    self._paused = frames.snapshot()
                return share_over

    def _play_gym(
        self,
        record: _EpisodeRecord,
        greedy: bool,
        on_frame: Any,
        quota: int | None,
        played: int,
        fresh: bool,
    ) -> bool:
        """The episode loop through ``env.reset``/``env.step`` and the RGB rule;
        arguments and result as for ``_play_direct``."""
        if fresh:
            screen, _ = self.env.reset()
            previous = preprocess(screen)
        else:
            screen, previous = self._paused["screen"], self._paused["previous"]
        self._paused = None
        steps = played
        while True:
            current = preprocess(screen)
            cols, signs = frame_difference(current, previous)
            previous = current
            up = self._choose_up(cols, signs, greedy)
            if on_frame is not None:
                on_frame(screen, cols, signs)
            screen, reward, terminated, truncated, _ = self.env.step(UP if up else DOWN)
            record.add(cols, signs, up, reward)
            steps += 1
            over = terminated or truncated
            share_over = share_ends(steps, quota, reward, over)
            if share_over or over:
                if not over:
                    action = self.env.unwrapped._action_set[UP if up else DOWN]
                    self._episode.last_action = action.value
                    self._paused = {"screen": screen, "previous": previous}
                return share_over

    def state(self) -> dict[str, Any]:
        """JSON-able snapshot of the emulator (RNG included) and both generators,
        and, if a batch of steps paused an episode, that episode so far
        (``"episode"``: its reward, steps and the frames it goes on from).
        """
        unwrapped = self.env.unwrapped
        ale_state = unwrapped.ale.cloneState(include_rng=True).serialize()
        state: dict[str, Any] = {
            "ale": base64.b64encode(ale_state).decode("ascii"),
            "env_rng": unwrapped.np_random.bit_generator.state,
            "action_rng": self.rng.bit_generator.state,
        }
        if self._episode is not None:
            assert self._paused is not None  # set with the pause
            state["episode"] = {
                "reward": self._episode.reward,
                "steps": self._episode.steps,
                "last_action": self._episode.last_action,
                "frames": {k: pack_array(v) for k, v in self._paused.items()},
            }
        return state

    def load_stream(self, stream: dict[str, Any]) -> None:
        """Continue ``stream``: a ``state()`` snapshot, or ``{"seed": s}`` for a new
        stream, which seeds the emulator and the sampler from ``s``."""
        if "seed" in stream:
            self.rng = np.random.default_rng(stream["seed"])
            self.env.reset(seed=stream["seed"])
            self._episode = self._paused = None
        else:
            self.restore(stream)

    def restore(self, state: dict[str, Any]) -> None:
        """Return to a ``state()`` snapshot (between episodes, or mid-episode)."""
        import ale_py

        unwrapped = self.env.unwrapped
        ale = unwrapped.ale
        saved = ale_py.ALEState(base64.b64decode(state["ale"]))
        ale.restoreState(saved)
        episode = state.get("episode")
        if episode is not None:
            _restore_sticky_action(ale, saved, episode["last_action"])
        unwrapped.np_random.bit_generator.state = state["env_rng"]
        self.rng.bit_generator.state = state["action_rng"]
        self._episode = self._paused = None
        if episode is not None:
            self._episode = _InProgress(
                episode["reward"], episode["steps"], last_action=episode["last_action"]
            )
            frames = {k: unpack_array(v) for k, v in episode["frames"].items()}
            if self.direct:
                self._frames.restore(frames)
            self._paused = frames

    def close(self) -> None:
        self.env.close()


assert INPUT_SIZE == 80 * 80
