"""The fast paths compute what the plain paths compute, on the real emulator.

- preprocessing from the ALE's palette-index screen == the RGB rule;
- the actor's direct ALE loop == the same actor through ``env.step`` (episodes,
  actions, video frames), and resumes exactly;
- the per-step sparse forward and the sparse (CSR) update == the dense NumPy path;
- ``ActorPool`` plays slot j of each batch from stream j, so one actor and two
  worker processes play the same episodes.

No timings here: speed is measured in bench/.
"""

from __future__ import annotations

import hashlib
from typing import Any

import array_api_compat.numpy as xp
import numpy as np
import pytest
from conftest import assert_same_episode

from pongxp import backend as backend_mod
from pongxp.batch import HostBatch, stack
from pongxp.config import INPUT_SIZE
from pongxp.optim import zeros_like_params
from pongxp.policy import forward, init_params, step_up_probability
from pongxp.preprocess import TOP, PaletteFrames, frame_difference, preprocess
from pongxp.rollout import DOWN, UP, Actor, make_env
from pongxp.update import apply_update
from pongxp.workers import ActorPool, fresh_streams, stream_seed


@pytest.fixture(scope="module")
def screens() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """500 real consecutive Pong-v0 screens, as palette indices and as RGB."""
    env = make_env("Pong-v0")
    rgb, _ = env.reset(seed=3)
    ale = env.unwrapped.ale
    rng = np.random.default_rng(3)
    indices, rgbs = [ale.getScreen()], [rgb]
    for _ in range(499):
        rgb, *_ = env.step(UP if rng.random() < 0.5 else DOWN)
        indices.append(ale.getScreen())
        rgbs.append(rgb)
    env.close()
    return indices, rgbs


class Replay:
    """``get_screen``/``get_rgb`` callables that play back recorded screens."""

    def __init__(self, indices: list[np.ndarray], rgbs: list[np.ndarray]) -> None:
        self.indices, self.rgbs = indices, rgbs
        self.at = -1
        self.rgb_calls = 0

    def get_screen(self, out: np.ndarray) -> None:
        self.at += 1
        out[...] = self.indices[self.at]

    def get_rgb(self) -> np.ndarray:
        self.rgb_calls += 1
        return self.rgbs[self.at].copy()


def test_palette_frames_match_rgb_rule(screens: tuple[list, list]) -> None:
    indices, rgbs = screens
    replay = Replay(indices, rgbs)
    frames = PaletteFrames(replay.get_screen, replay.get_rgb)
    frames.reset()
    counts = []
    for t in range(1, len(rgbs)):
        cols, signs = frames.step()
        want_cols, want_signs = frame_difference(preprocess(rgbs[t]), preprocess(rgbs[t - 1]))
        np.testing.assert_array_equal(cols, want_cols)
        np.testing.assert_array_equal(signs, want_signs)
        assert signs.dtype == np.int8
        counts.append(cols.size)
    assert 0 < np.mean(counts) < 100  # a few dozen of 6400: the test saw real motion
    # Colours are learnt from RGB a few times (new colours), not every step.
    assert 1 <= replay.rgb_calls <= 5


def test_palette_frames_learn_colours_first_seen_mid_episode(screens: tuple[list, list]) -> None:
    """A first frame showing only background: paddles and ball are learnt later, exactly."""
    indices, rgbs = screens
    first_index, first_rgb = indices[100].copy(), rgbs[100].copy()
    background = (first_index[TOP + 2, 40], first_rgb[TOP + 2, 40].copy())  # a field pixel
    first_index[TOP:195], first_rgb[TOP:195] = background
    assert preprocess(first_rgb).sum() == 0
    replay = Replay([first_index, *indices[101:200]], [first_rgb, *rgbs[101:200]])
    frames = PaletteFrames(replay.get_screen, replay.get_rgb)
    frames.reset()
    assert replay.rgb_calls == 1  # the background
    previous = preprocess(first_rgb)
    for t in range(1, len(replay.rgbs)):
        cols, signs = frames.step()
        current = preprocess(replay.rgbs[t])
        want_cols, want_signs = frame_difference(current, previous)
        previous = current
        np.testing.assert_array_equal(cols, want_cols)
        np.testing.assert_array_equal(signs, want_signs)
    assert replay.rgb_calls >= 2  # the other colours were learnt in step()


def _weights(hidden: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    return init_params(np.random.default_rng(seed), hidden, INPUT_SIZE)


def _recorder(into: list[Any]) -> Any:
    def on_frame(screen: np.ndarray, cols: np.ndarray, signs: np.ndarray) -> None:
        assert screen.shape == (210, 160, 3) and screen.dtype == np.uint8
        assert cols.dtype == np.int32 and signs.dtype == np.int8
        into.append((hashlib.sha1(screen.tobytes()).hexdigest(), cols.copy(), signs.copy()))

    return on_frame


def test_direct_actor_equals_env_step_actor() -> None:
    w = _weights()
    fast, plain = Actor("Pong-v0", 11, xp), Actor("Pong-v0", 11, xp)
    assert fast.direct, "the direct ALE loop is not in use; this test would prove nothing"
    plain.direct = False
    for actor in (fast, plain):
        actor.set_weights(w["W1"], w["W2"])
    for greedy in (False, True):
        seen_fast: list[Any] = []
        seen_plain: list[Any] = []
        ep_fast, stats_fast = fast.play(greedy=greedy, on_frame=_recorder(seen_fast))
        ep_plain, stats_plain = plain.play(greedy=greedy, on_frame=_recorder(seen_plain))
        assert_same_episode(ep_fast, ep_plain)
        assert (stats_fast.reward, stats_fast.steps) == (stats_plain.reward, stats_plain.steps)
        assert len(seen_fast) == len(seen_plain) == stats_fast.steps
        for (h1, c1, s1), (h2, c2, s2) in zip(seen_fast, seen_plain, strict=True):
            assert h1 == h2  # the same RGB screen for the video
            np.testing.assert_array_equal(c1, c2)
            np.testing.assert_array_equal(s1, s2)
    for actor in (fast, plain):
        actor.close()


def test_direct_actor_resumes_exactly() -> None:
    w = _weights(hidden=16)
    actor = Actor("Pong-v0", 5, xp)
    actor.set_weights(w["W1"], w["W2"])
    actor.play()
    snapshot = actor.state()
    straight, _ = actor.play()
    actor.restore(snapshot)
    again, _ = actor.play()
    assert_same_episode(straight, again)
    actor.close()


@pytest.fixture(scope="module")
def real_batch() -> tuple[HostBatch, dict[str, np.ndarray]]:
    """Two real episodes played with float64 weights."""
    w = _weights(seed=1)
    actor = Actor("Pong-v0", 2, xp, dtype="float64")
    actor.set_weights(w["W1"], w["W2"])
    episodes = [actor.play()[0] for _ in range(2)]
    actor.close()
    return stack(episodes), w


def test_step_forward_matches_dense_forward(real_batch: tuple[HostBatch, dict]) -> None:
    batch, w = real_batch
    w1_t = np.ascontiguousarray(w["W1"].T)
    sparse = np.array(
        [
            float(step_up_probability(w1_t, w["W2"], batch.cols[a:b], batch.signs[a:b], xp))
            for a, b in zip(batch.indptr[:-1], batch.indptr[1:], strict=True)
        ]
    )
    _, dense = forward(w, batch.dense_frames(INPUT_SIZE).astype(np.float64), xp)
    np.testing.assert_allclose(sparse, dense, rtol=1e-12, atol=1e-15)


def _update(be: backend_mod.Backend, batch: HostBatch, w: dict[str, np.ndarray]) -> dict:
    params = {k: be.asarray(v) for k, v in w.items()}
    cache = zeros_like_params(params, be.xp)
    dev = be.batch_to_device(batch, INPUT_SIZE)
    new_params, new_cache, grads = apply_update(params, cache, dev, 0.99, 1e-3, 0.99, be.xp)
    return {
        f"{kind}.{k}": be.to_host(v)
        for kind, d in (("params", new_params), ("cache", new_cache), ("grads", grads))
        for k, v in d.items()
    }


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sparse_update_matches_dense_numpy(real_batch: tuple[HostBatch, dict], dtype: str) -> None:
    """The CSR update on the CPU == the plain dense NumPy float64 path, within float tolerance."""
    batch, w = real_batch
    got = _update(backend_mod.Backend(dtype, sparse=True), batch, w)
    want = _update(backend_mod.Backend("float64", sparse=False), batch, w)
    # float32: RMSProp's g / sqrt(cache) turns the rounding of near-zero gradients
    # into relative changes of the step (observed ~2e-4 of max |W1|).
    rtol = 1e-10 if dtype == "float64" else 2e-3
    for name, expected in want.items():
        scale = float(np.abs(expected).max())
        assert scale > 0, name
        np.testing.assert_allclose(got[name], expected, rtol=rtol, atol=rtol * scale, err_msg=name)


def test_pool_plays_each_slot_from_its_stream_whatever_the_actor_count() -> None:
    w = _weights(hidden=16)

    def run(num_actors: int) -> list[tuple[HostBatch, dict[str, Any]]]:
        pool = ActorPool("Pong-v0", num_actors)
        try:
            pool.set_weights(w["W1"], w["W2"])
            streams = fresh_streams(7, 3)  # 3 slots on 2 actors: one takes two
            first = [(share.batch, stream) for share, stream in pool.play(streams)]
            # The next batch continues each slot's stream, not each actor's.
            second = [(share.batch, s) for share, s in pool.play([s for _, s in first])]
            assert pool.busy_seconds > 0 and pool.wall_seconds > 0
            return first + second
        finally:
            pool.close()

    one, two = run(1), run(2)
    for (a, stream_a), (b, stream_b) in zip(one, two, strict=True):
        assert_same_episode(a, b)
        assert stream_a == stream_b
    # A slot's episodes are a single actor's consecutive episodes from the slot's seed.
    actor = Actor("Pong-v0", stream_seed(7, 1), xp)
    actor.set_weights(w["W1"], w["W2"])
    assert_same_episode(one[1][0], actor.play()[0])
    assert_same_episode(one[4][0], actor.play()[0])
    actor.close()


def test_a_batch_cut_short_keeps_the_idle_share_between_0_and_1() -> None:
    """Ctrl-C mid-batch: the episodes handed out so far and the time they took
    are counted together (the idle share printed on exit once came out negative)."""
    w = _weights(hidden=16)
    pool = ActorPool("Pong-v0", 2)
    try:
        pool.set_weights(w["W1"], w["W2"])
        batch = pool.play(fresh_streams(3, 4))
        next(batch)  # the trainer takes one episode, then is interrupted
        batch.close()
        busy, wall = pool.busy_seconds, pool.wall_seconds
        assert busy > 0
        assert 0 <= 1 - busy / (pool.num_actors * wall) <= 1, (busy, wall)
    finally:
        pool.close()
