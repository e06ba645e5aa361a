"""The xp math core on every backend, device and dtype, against the NumPy references.

The matrix, as in scikit-learn's and SciPy's array-API suites: NumPy (sparse
and dense X); array-api-strict on its default device (``CPU_DEVICE``), on
``device1`` and, for float32, on ``no_float64``; CuPy where it has a device.

array-api-strict rejects anything outside the array API standard (NumPy-only
functions, NumPy scalars, mixing in host arrays), so a NumPy-only call in the
math cannot hide until someone runs on a GPU. On ``device1`` it also refuses
to combine arrays from two devices, so an array the math creates on the
default device (an ``arange`` without ``device=``) fails here as it would on a
second GPU; ``no_float64`` refuses float64, so a float64 temporary cannot hide
in a float32 update. CuPy cases run where CuPy has a device and skip with the
reason otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from array_api_compat import device
from conftest import make_backend
from reference import (
    adam_loop,
    central_differences,
    clip_loop,
    discounted_returns_loop,
    episode_gradient,
    rmsprop_loop,
)

from pongxp import backend as backend_mod
from pongxp.batch import HostBatch, stack
from pongxp.config import INPUT_SIZE
from pongxp.diagnostics import TAGS as DIAGNOSTIC_TAGS
from pongxp.diagnostics import batch_figures
from pongxp.optim import (
    adam_step,
    clip_by_global_norm,
    init_state,
    optimizer_step,
    rmsprop_step,
    zeros_like_params,
)
from pongxp.policy import backward, forward, init_params, sigmoid, step_up_probability
from pongxp.returns import discounted_returns, standardize_per_episode
from pongxp.update import all_finite, apply_update, policy_gradient
from pongxp.workers import ActorPool, fresh_streams

GPU_OK, GPU_WHY = backend_mod.gpu_available()
GPU_MARKS = [pytest.mark.gpu, pytest.mark.skipif(not GPU_OK, reason=GPU_WHY)]
BACKENDS = [
    "cpu-sparse",
    "cpu-dense",
    "strict",
    "strict-device1",
    pytest.param("gpu", marks=GPU_MARKS),
]
#: (backend, dtype) pairs every math test runs on: all backends in float64,
#: and in float32 the training default's paths plus the device that refuses float64.
MATRIX = [
    *(pytest.param((name, "float64"), id=f"{name}-float64") for name in BACKENDS[:-1]),
    pytest.param(("gpu", "float64"), id="gpu-float64", marks=GPU_MARKS),
    *(
        pytest.param((name, "float32"), id=f"{name}-float32")
        for name in ("cpu-sparse", "strict-device1", "strict-no_float64")
    ),
    pytest.param(("gpu", "float32"), id="gpu-float32", marks=GPU_MARKS),
]


@pytest.fixture(params=MATRIX)
def be(request: pytest.FixtureRequest) -> backend_mod.Backend:
    return make_backend(*request.param)


def rtol(be: backend_mod.Backend, float64: float, float32: float) -> float:
    return float64 if be.dtype_name == "float64" else float32


def synthetic_episode(rng: np.random.Generator, steps: int, truncated: bool) -> HostBatch:
    """Random sparse inputs and Pong-like rewards; a point ends every ~40 steps."""
    counts = rng.integers(0, 40, size=steps)
    cols = np.concatenate(
        [np.sort(rng.choice(INPUT_SIZE, size=c, replace=False)) for c in counts]
    ).astype(np.int32)
    rewards = np.zeros(steps, dtype=np.int8)
    points = rng.random(steps) < 1 / 40
    rewards[points] = rng.choice([-1, 1], size=int(points.sum()))
    rewards[-1] = 0 if truncated else rng.choice([-1, 1])
    return HostBatch(
        indptr=np.concatenate(([0], np.cumsum(counts))).astype(np.int32),
        cols=cols,
        signs=rng.choice(np.array([-1, 1], dtype=np.int8), size=cols.size),
        ups=(rng.random(steps) < 0.5).astype(np.uint8),
        rewards=rewards,
        lengths=np.array([steps], dtype=np.int64),
    )


@pytest.fixture(scope="module")
def synthetic_batch() -> HostBatch:
    rng = np.random.default_rng(7)
    lengths = [300, 1, 57, 400, 2]
    return stack([synthetic_episode(rng, n, truncated=(i == 2)) for i, n in enumerate(lengths)])


@pytest.fixture(scope="module")
def real_batch() -> tuple[HostBatch, dict[str, np.ndarray]]:
    """Three real Pong episodes played by a small random-init policy, and its weights."""
    params = init_params(np.random.default_rng(1), 32, INPUT_SIZE)
    pool = ActorPool("Pong-v0", 1, dtype="float64")
    pool.set_weights(params["W1"], params["W2"])
    episodes = [share.batch for share, _ in pool.play(fresh_streams(1, 3))]
    pool.close()
    return stack(episodes), params


def host(be: backend_mod.Backend, a: Any) -> np.ndarray:
    """``a`` on the host, after checking it is on the backend's device in its dtype."""
    if isinstance(be, backend_mod.StrictBackend):
        assert device(a) == be.device
    out = be.to_host(a)
    if np.issubdtype(out.dtype, np.floating):
        assert out.dtype == np.dtype(be.dtype_name)
    return out


def test_returns_match_plain_loop(be: backend_mod.Backend, synthetic_batch: HostBatch) -> None:
    dev = be.batch_to_device(synthetic_batch, INPUT_SIZE)
    got = host(be, discounted_returns(dev.rewards, dev.episode_id, 0.99, be.xp))
    expected = np.concatenate(
        [discounted_returns_loop(ep.rewards, 0.99) for ep in synthetic_batch.episodes()]
    )
    tol = rtol(be, 1e-12, 1e-5)  # float32: 0.99 rounded, raised to ~100
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    # Resets are real: the step of a point is exactly its reward.
    nz = synthetic_batch.rewards != 0
    np.testing.assert_array_equal(got[nz], synthetic_batch.rewards[nz])


def test_returns_handwritten_case(be: backend_mod.Backend) -> None:
    xp = be.xp
    rewards = be.asarray(np.array([0, 0, 1, 0, -1, 0, 0], dtype=np.float64))
    episode_id = be.asarray(np.array([0, 0, 0, 0, 0, 1, 1], dtype=np.int32))
    got = host(be, discounted_returns(rewards, episode_id, 0.5, xp))
    # Episode 0: 0.25, 0.5, 1 | -0.5, -1 ; episode 1 has no point: zeros.
    np.testing.assert_allclose(got, [0.25, 0.5, 1.0, -0.5, -1.0, 0.0, 0.0])


def test_standardize_per_episode(be: backend_mod.Backend) -> None:
    values = np.array([1.0, 2.0, 3.0, 0.0, 0.0, 5.0, 5.0, 5.0, -2.0, 4.0])
    ids = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3], dtype=np.int32)
    got = host(be, standardize_per_episode(be.asarray(values), be.asarray(ids), 4, be.xp))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got[:3], [-1.224744871, 0.0, 1.224744871], rtol=rtol(be, 1e-8, 1e-6))
    np.testing.assert_array_equal(got[3:8], 0.0)  # all-zero and constant episodes: std 0
    np.testing.assert_allclose(got[8:], [-1.0, 1.0])


def test_sigmoid_is_stable(be: backend_mod.Backend) -> None:
    logits = be.asarray(np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0]))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = host(be, sigmoid(logits, be.xp))
    with np.errstate(over="ignore"):  # the naive formula overflows to inf -> p = 0, correctly
        expected = 1 / (1 + np.exp(-np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])))
    np.testing.assert_allclose(p, expected, rtol=rtol(be, 1e-15, 1e-6))


def test_step_probability_matches_batched_forward(
    be: backend_mod.Backend, real_batch: tuple[HostBatch, dict[str, np.ndarray]]
) -> None:
    batch, params = real_batch
    dev = be.batch_to_device(batch, INPUT_SIZE)
    dparams = {k: be.asarray(v) for k, v in params.items()}
    _, p_batch = forward(dparams, dev.frames, be.xp)
    p_batch = host(be, p_batch)
    w1_t = be.asarray(np.ascontiguousarray(params["W1"].T))
    for t in (0, 5, 200, batch.num_steps - 1):
        lo, hi = batch.indptr[t], batch.indptr[t + 1]
        p = step_up_probability(
            w1_t, dparams["W2"], be.asarray(batch.cols[lo:hi]), be.asarray(batch.signs[lo:hi]),
            be.xp,
        )  # fmt: skip
        assert float(host(be, p)) == pytest.approx(p_batch[t], rel=rtol(be, 1e-12, 1e-5))


def test_backward_matches_finite_differences() -> None:
    """d/dW of L(W) = sum_t A_t * log pi(a_t | x_t; W) vs central differences."""
    be = make_backend("cpu-dense", "float64")
    xp = be.xp
    rng = np.random.default_rng(0)
    steps, hidden = 40, 8
    x = rng.choice([-1.0, 0.0, 1.0], p=[0.05, 0.9, 0.05], size=(steps, INPUT_SIZE))
    ups = (rng.random(steps) < 0.5).astype(np.float64)
    advantage = rng.standard_normal(steps)
    params = init_params(rng, hidden, INPUT_SIZE)

    def objective(p: dict[str, np.ndarray]) -> float:
        _, prob = forward(p, x, xp)
        return float(np.sum(advantage * (ups * np.log(prob) + (1 - ups) * np.log(1 - prob))))

    hidden_act, prob = forward(params, x, xp)
    grads = backward(params, x, hidden_act, (ups - prob) * advantage, xp)
    active_cols = np.flatnonzero(np.any(x != 0, axis=0))
    checks = [("W2", (i,)) for i in range(hidden)]
    checks += [("W1", (int(rng.integers(hidden)), int(c))) for c in rng.choice(active_cols, 30)]
    checks += [("W1", (0, int(np.flatnonzero(np.all(x == 0, axis=0))[0])))]  # zero gradient
    numeric = central_differences(objective, params, checks)
    for (name, index), want in zip(checks, numeric, strict=True):
        assert grads[name][index] == pytest.approx(want, rel=1e-5, abs=1e-8), (name, index)


def test_rmsprop_step_matches_hand_computation(be: backend_mod.Backend) -> None:
    rng = np.random.default_rng(2)
    params = {"W1": rng.standard_normal((3, 4)), "W2": rng.standard_normal(3)}
    grads = {"W1": rng.standard_normal((3, 4)), "W2": np.array([0.0, 1.0, -2.0])}
    cache = {"W1": rng.random((3, 4)), "W2": np.zeros(3)}
    expected_p = {k: v.copy() for k, v in params.items()}
    expected_c = {k: v.copy() for k, v in cache.items()}
    rmsprop_loop(expected_p, grads, expected_c, 1e-3, 0.9)
    # By hand for W2[1]: cache = 0.1 * 1 = 0.1; step = 1e-3 * 1 / (sqrt(0.1) + 1e-5)
    assert expected_p["W2"][1] - params["W2"][1] == pytest.approx(1e-3 / (0.1**0.5 + 1e-5))

    new_p, new_c = rmsprop_step(
        {k: be.asarray(v) for k, v in params.items()},
        {k: be.asarray(v) for k, v in grads.items()},
        {k: be.asarray(v) for k, v in cache.items()},
        1e-3, 0.9, be.xp,
    )  # fmt: skip
    for k in params:
        tol = rtol(be, 1e-13, 1e-6)
        np.testing.assert_allclose(host(be, new_p[k]), expected_p[k], rtol=tol)
        np.testing.assert_allclose(host(be, new_c[k]), expected_c[k], rtol=tol)
    zero = zeros_like_params(new_p, be.xp)
    assert all(float(host(be, be.xp.max(be.xp.abs(v)))) == 0.0 for v in zero.values())


def test_adam_step_matches_the_plain_loop(be: backend_mod.Backend) -> None:
    """Three Adam steps from zero moments (bias correction at t = 1, 2, 3), an
    entry whose gradient is always 0 staying put, == Kingma & Ba's loop."""
    rng = np.random.default_rng(5)
    params = {"W1": rng.standard_normal((3, 4)), "W2": rng.standard_normal(3)}
    expected_p = {k: v.copy() for k, v in params.items()}
    expected_m = {f"{m}_{k}": np.zeros_like(v) for m in "mv" for k, v in params.items()}
    dparams = {k: be.asarray(v) for k, v in params.items()}
    state = init_state("adam", dparams, be.xp)
    assert sorted(state) == ["m_W1", "m_W2", "v_W1", "v_W2"]
    for step in (1, 2, 3):
        grads = {"W1": rng.standard_normal((3, 4)), "W2": np.array([0.0, 1.0, -2.0]) * step}
        if step == 1:
            # By hand: from zero moments the first step is lr * g / (|g| + eps), lr * sign(g).
            d = adam_step(dparams, {k: be.asarray(v) for k, v in grads.items()}, state, 1,
                          1e-3, be.xp)[0]  # fmt: skip
            w2_step = host(be, d["W2"]) - host(be, dparams["W2"])
            np.testing.assert_allclose(w2_step, [0.0, 1e-3, -1e-3], atol=rtol(be, 1e-11, 2e-7))
        adam_loop(expected_p, grads, expected_m, step, 1e-3)
        dparams, state = adam_step(
            dparams, {k: be.asarray(v) for k, v in grads.items()}, state, step, 1e-3, be.xp
        )
        for k in params:
            # Steps of 1e-3 on weights of ~1: float32 keeps them to a few ulps of 1.
            atol = rtol(be, 1e-12, 1e-6)
            np.testing.assert_allclose(host(be, dparams[k]), expected_p[k], rtol=0, atol=atol)
        for k, v in expected_m.items():
            np.testing.assert_allclose(host(be, state[k]), v, rtol=rtol(be, 1e-12, 1e-5))
    assert host(be, dparams["W2"])[0] == np.asarray(params["W2"][0], be.dtype_name)
    with pytest.raises(ValueError, match="from 1"):
        adam_step(dparams, dparams, state, 0, 1e-3, be.xp)


def test_optimizer_step_picks_the_optimizer(be: backend_mod.Backend) -> None:
    rng = np.random.default_rng(6)
    params = {k: be.asarray(rng.standard_normal(s)) for k, s in (("W1", (2, 3)), ("W2", (2,)))}
    grads = {k: be.asarray(rng.standard_normal(s)) for k, s in (("W1", (2, 3)), ("W2", (2,)))}
    for name, direct in (
        ("rmsprop", lambda st: rmsprop_step(params, grads, st, 1e-3, 0.9, be.xp)),
        ("adam", lambda st: adam_step(params, grads, st, 4, 1e-3, be.xp)),
    ):
        state = init_state(name, params, be.xp)
        got, want = optimizer_step(name, params, grads, state, 4, 1e-3, 0.9, be.xp), direct(state)
        for k in params:
            np.testing.assert_array_equal(host(be, got[0][k]), host(be, want[0][k]))
        assert sorted(got[1]) == sorted(want[1])
    with pytest.raises(ValueError, match="sgd"):
        init_state("sgd", params, be.xp)


@pytest.mark.parametrize("length", ["long", "short", "zero"])
def test_clipping_matches_the_plain_loop(be: backend_mod.Backend, length: str) -> None:
    """Longer than C: scaled to norm C, the direction kept; at most C (and all
    zero): returned unchanged, with no division by zero."""
    rng = np.random.default_rng(7)
    scale = {"long": 10.0, "short": 0.01, "zero": 0.0}[length]
    grads = {"W1": rng.standard_normal((3, 4)) * scale, "W2": rng.standard_normal(3) * scale}
    want = clip_loop(grads, 2.0)
    got = clip_by_global_norm({k: be.asarray(v) for k, v in grads.items()}, 2.0, be.xp)
    for k in grads:
        np.testing.assert_allclose(host(be, got[k]), want[k], rtol=rtol(be, 1e-12, 1e-6))
    norm = np.sqrt(sum(np.sum(host(be, g).astype(np.float64) ** 2) for g in got.values()))
    if length == "long":
        assert norm == pytest.approx(2.0, rel=rtol(be, 1e-12, 1e-6))
    else:  # exactly as given
        for k in grads:
            np.testing.assert_array_equal(host(be, got[k]), grads[k].astype(be.dtype_name))


@pytest.fixture(scope="module")
def real_gradient(real_batch: tuple[HostBatch, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The tutorial's gradient of ``real_batch``: per-episode, step by step, summed."""
    batch, params = real_batch
    expected = {"W1": np.zeros_like(params["W1"]), "W2": np.zeros_like(params["W2"])}
    for ep in batch.episodes():
        x = ep.dense_frames(INPUT_SIZE).astype(np.float64)
        g = episode_gradient(params["W1"], params["W2"], x, ep.ups, ep.rewards, 0.99)
        for k in expected:
            expected[k] += g[k]
    return expected


def assert_close_to_reference(be: backend_mod.Backend, got: Any, expected: np.ndarray) -> None:
    """float64 to 1e-9; float32 to 1e-4 of the largest entry (its rounding, summed over steps)."""
    scale = float(np.abs(expected).max())
    tol = rtol(be, 1e-9, 0.0), rtol(be, 1e-10, 1e-4 * scale)
    np.testing.assert_allclose(host(be, got), expected, rtol=tol[0], atol=tol[1])


def test_batched_update_equals_per_episode_accumulation(
    be: backend_mod.Backend,
    real_batch: tuple[HostBatch, dict[str, np.ndarray]],
    real_gradient: dict[str, np.ndarray],
) -> None:
    """One batched gradient on the device == the tutorial's per-episode sum."""
    batch, params = real_batch
    dev = be.batch_to_device(batch, INPUT_SIZE)
    (dparams,) = be.to_device_all(params)
    got = policy_gradient(dparams, dev, 0.99, be.xp)
    for k, expected in real_gradient.items():
        assert_close_to_reference(be, got[k], expected)


def test_whole_update_on_real_episodes(
    be: backend_mod.Backend,
    real_batch: tuple[HostBatch, dict[str, np.ndarray]],
    real_gradient: dict[str, np.ndarray],
) -> None:
    """What the trainer does per batch, on the device: weights and cache up in one
    copy, the batch up in one copy, gradient + RMSProp, finiteness, weights back
    in one copy; equal to the tutorial's gradient and the spec's RMSProp loop."""
    batch, params = real_batch
    rng = np.random.default_rng(3)
    cache = {k: 0.5 + 0.5 * rng.random(v.shape) for k, v in params.items()}  # a later batch's
    dparams, dcache = be.to_device_all(params, cache)
    dev = be.batch_to_device(batch, INPUT_SIZE)
    new_p, new_c, grads = apply_update(dparams, dcache, dev, 0.99, 1e-3, 0.99, be.xp)
    assert all_finite([*new_p.values(), *new_c.values(), *grads.values()], be.xp)
    expected_p = {k: v.copy() for k, v in params.items()}
    expected_c = {k: v.copy() for k, v in cache.items()}
    rmsprop_loop(expected_p, real_gradient, expected_c, 1e-3, 0.99)
    for k in params:
        assert_close_to_reference(be, grads[k], real_gradient[k])
        # The step is lr * g / sqrt(cache) with sqrt(cache) ~ 1: tiny beside W.
        np.testing.assert_allclose(host(be, new_c[k]), expected_c[k], rtol=rtol(be, 1e-9, 1e-5))
        step_got = host(be, new_p[k]) - host(be, dparams[k])
        step_want = expected_p[k] - params[k]
        assert_close_to_reference(be, be.asarray(step_got), step_want)
    host_p, host_c = be.to_host_all(new_p, new_c)
    for k in params:
        np.testing.assert_array_equal(host_p[k], host(be, new_p[k]))
        np.testing.assert_array_equal(host_c[k], host(be, new_c[k]))
        assert host_p[k].shape == params[k].shape


def test_whole_update_with_adam_and_clipping_on_real_episodes(
    be: backend_mod.Backend,
    real_batch: tuple[HostBatch, dict[str, np.ndarray]],
    real_gradient: dict[str, np.ndarray],
) -> None:
    """``--optimizer adam --clip-norm C`` as the trainer runs it: a later batch's
    moments up with the weights in one copy, the gradient clipped to C, an Adam
    step at t = 5; == the tutorial's gradient, the plain clipping loop and
    Kingma & Ba's loop. The returned gradient is the unclipped one."""
    batch, params = real_batch
    rng = np.random.default_rng(8)
    moments = {
        **{f"m_{k}": 0.1 * rng.standard_normal(v.shape) for k, v in params.items()},
        **{f"v_{k}": 0.5 + 0.5 * rng.random(v.shape) for k, v in params.items()},
    }
    norm = np.sqrt(sum(np.sum(g**2) for g in real_gradient.values()))
    clip = float(norm / 3)  # active: the gradient is 3x longer
    dparams, dmoments = be.to_device_all(params, moments)
    dev = be.batch_to_device(batch, INPUT_SIZE)
    new_p, new_m, grads = apply_update(
        dparams, dmoments, dev, 0.99, 1e-3, 0.99, be.xp, optimizer="adam", step=5, clip_norm=clip
    )
    assert all_finite([*new_p.values(), *new_m.values(), *grads.values()], be.xp)
    expected_p = {k: v.copy() for k, v in params.items()}
    expected_m = {k: v.copy() for k, v in moments.items()}
    adam_loop(expected_p, clip_loop(real_gradient, clip), expected_m, 5, 1e-3)
    for k in params:
        assert_close_to_reference(be, grads[k], real_gradient[k])  # unclipped
        # float32: the gradient's rounding (1e-4 of the largest step) and the
        # weights' own (a few ulps of the largest weight).
        step = np.abs(expected_p[k] - params[k]).max()
        atol = rtol(be, 1e-10 * step, 1e-4 * step + 1e-6 * np.abs(params[k]).max())
        np.testing.assert_allclose(host(be, new_p[k]), expected_p[k], rtol=0, atol=atol)
    _, host_m = be.to_host_all(new_p, new_m)  # a save's one copy down
    assert sorted(host_m) == sorted(moments)
    for k in moments:
        assert_close_to_reference(be, new_m[k], expected_m[k])
        np.testing.assert_array_equal(host_m[k], host(be, new_m[k]))


def test_all_finite_sees_every_array(be: backend_mod.Backend) -> None:
    arrays = [be.asarray(np.ones((2, 3))), be.asarray(np.zeros(4))]
    assert all_finite(arrays, be.xp) and all_finite({"a": arrays[0]}, be.xp)
    for bad in (np.inf, -np.inf, np.nan):
        values = np.zeros(4)
        values[2] = bad
        assert not all_finite([*arrays, be.asarray(values)], be.xp)


@pytest.mark.parametrize("name", ["cpu-sparse", "strict", "strict-device1", BACKENDS[-1]])
def test_float32_close_to_float64(name: str, real_batch: tuple[HostBatch, Any]) -> None:
    batch, params = real_batch
    out = {}
    for dtype in ("float32", "float64"):
        be = make_backend(name, dtype)
        dev = be.batch_to_device(batch, INPUT_SIZE)
        grads = policy_gradient({k: be.asarray(v) for k, v in params.items()}, dev, 0.99, be.xp)
        out[dtype] = {k: host(be, v) for k, v in grads.items()}
        assert out[dtype]["W1"].dtype == np.dtype(dtype)
    for k in ("W1", "W2"):
        scale = np.abs(out["float64"][k]).max()
        np.testing.assert_allclose(out["float32"][k], out["float64"][k], atol=1e-4 * scale)


def test_batch_figures_match_a_plain_computation(
    be: backend_mod.Backend, real_batch: tuple[HostBatch, Any]
) -> None:
    """The per-batch policy figures (TensorBoard's policy/ and update/ tags), on
    every backend and device, against the same quantities in plain NumPy."""
    batch, params = real_batch
    dtype = np.dtype(be.dtype_name)
    before = {k: v.astype(dtype) for k, v in params.items()}
    after = {k: v * 1.01 + 1e-3 for k, v in before.items()}
    dev = be.batch_to_device(batch, INPUT_SIZE)
    got = host(be, batch_figures(*({k: be.asarray(v) for k, v in w.items()}
                                   for w in (before, after)), dev, be.xp))  # fmt: skip
    assert got.shape == (len(DIAGNOSTIC_TAGS),)
    x = batch.dense_frames(INPUT_SIZE).astype(np.float64)
    p = 1 / (1 + np.exp(-(np.maximum(x @ params["W1"].T, 0) @ params["W2"])))
    taken = np.where(batch.ups > 0, p, 1 - p)
    want = [
        np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p))),
        np.mean(np.abs(p - 0.5)),
        np.mean(np.log(taken)),
        *(np.linalg.norm(after[k] - before[k]) / np.linalg.norm(before[k]) for k in ("W1", "W2")),
    ]
    np.testing.assert_allclose(got, want, rtol=rtol(be, 1e-10, 1e-4))
    # A policy that is sure (p = 0 or 1 in float32) has entropy 0, not NaN.
    sure = {k: be.asarray(v * 1e4) for k, v in before.items()}
    figures = host(be, batch_figures(sure, sure, dev, be.xp))
    assert np.all(np.isfinite(figures)) and 0 <= figures[0] < 0.69
