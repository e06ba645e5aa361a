"""Preprocessing on real ALE frames."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pongxp.preprocess import BACKGROUND, frame_difference, preprocess
from pongxp.rollout import DOWN, UP, make_env


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """A few hundred real Pong screens from a seeded run with alternating actions."""
    env = make_env("Pong-v0")
    screen, _ = env.reset(seed=3)
    rng = np.random.default_rng(3)
    out = [screen]
    for _ in range(300):
        screen, *_ = env.step(UP if rng.random() < 0.5 else DOWN)
        out.append(screen)
    env.close()
    return out


def reference(frame: np.ndarray) -> np.ndarray:
    """The tutorial's rule written out step by step, independently of the module."""
    img = frame[35:195][::2, ::2, 0].astype(np.int64)
    img[img == 144] = 0
    img[img == 109] = 0
    img[img != 0] = 1
    return img.ravel()


def test_shape_dtype_values(frames: list[np.ndarray]) -> None:
    x = preprocess(frames[100])
    assert x.shape == (6400,)
    assert x.dtype == np.uint8
    assert set(np.unique(x)) <= {0, 1}


def test_matches_reference_rule(frames: list[np.ndarray]) -> None:
    for frame in frames:
        np.testing.assert_array_equal(preprocess(frame), reference(frame))


def test_background_erased_objects_kept(frames: list[np.ndarray]) -> None:
    frame = frames[150]
    field = frame[35:195:2, ::2, 0]
    x = preprocess(frame).reshape(80, 80)
    # Background pixels (the vast majority) become 0 ...
    assert np.all(x[np.isin(field, BACKGROUND)] == 0)
    assert np.isin(field, BACKGROUND).mean() > 0.95
    # ... and the paddles (and ball, when in play) remain: a few dozen pixels.
    assert 10 <= int(x.sum()) <= 200
    # Our paddle is green (R=92) on the right; the opponent's is orange (R=213) on the left.
    assert np.any(field[:, 60:] == 92) and np.all(x[field == 92] == 1)
    assert np.any(field[:, :20] == 213) and np.all(x[field == 213] == 1)


def test_frame_difference_is_sparse_and_signed(frames: list[np.ndarray]) -> None:
    counts = []
    for before, after in itertools.pairwise(frames):
        prev, cur = preprocess(before), preprocess(after)
        cols, signs = frame_difference(cur, prev)
        dense = cur.astype(np.int16) - prev.astype(np.int16)
        np.testing.assert_array_equal(cols, np.flatnonzero(dense))
        np.testing.assert_array_equal(signs, dense[cols])
        assert cols.dtype == np.int32 and signs.dtype == np.int8
        counts.append(cols.size)
    assert 0 < np.mean(counts) < 100  # a few dozen of 6400


def test_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="210, 160, 3"):
        preprocess(np.zeros((84, 84), dtype=np.uint8))
