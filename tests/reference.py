"""Plain-loop NumPy references, written the way the tutorial states the method,
and pongxp's earlier returns code as an oracle for its replacement.

Deliberately naive (per-step loops, per-episode accumulation) so the fast,
vectorised, device-agnostic code in pongxp is checked against something
obviously right.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def discounted_returns_loop(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """One episode: G[t] = r[t] + gamma * G[t+1], reset where r[t] != 0."""
    out = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in reversed(range(len(rewards))):
        if rewards[t] != 0:
            running = 0.0
        running = running * gamma + rewards[t]
        out[t] = running
    return out


def episode_gradient(
    w1: np.ndarray,
    w2: np.ndarray,
    x: np.ndarray,
    ups: np.ndarray,
    rewards: np.ndarray,
    gamma: float,
) -> dict[str, np.ndarray]:
    """Tutorial-style gradient for one episode, with step-by-step forward passes."""
    hs, dlogps = [], []
    for t in range(x.shape[0]):
        h = np.maximum(w1 @ x[t], 0)
        p = 1.0 / (1.0 + np.exp(-(w2 @ h)))
        hs.append(h)
        dlogps.append(ups[t] - p)
    hs_arr, dlogp = np.array(hs), np.array(dlogps)
    g = discounted_returns_loop(rewards, gamma)
    g -= g.mean()
    if g.std() > 0:
        g /= g.std()
    dlogp = dlogp * g
    dw2 = hs_arr.T @ dlogp
    dh = np.outer(dlogp, w2)
    dh[hs_arr <= 0] = 0
    return {"W1": dh.T @ x, "W2": dw2}


def rmsprop_loop(
    params: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    cache: dict[str, np.ndarray],
    lr: float,
    decay: float,
) -> None:
    """In place, element by element as written in the spec."""
    for k in params:
        flat_p, flat_g, flat_c = params[k].reshape(-1), grads[k].reshape(-1), cache[k].reshape(-1)
        for i in range(flat_p.size):
            flat_c[i] = decay * flat_c[i] + (1 - decay) * flat_g[i] ** 2
            flat_p[i] += lr * flat_g[i] / (np.sqrt(flat_c[i]) + 1e-5)


def adam_loop(
    params: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    moments: dict[str, np.ndarray],
    step: int,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> None:
    """In place, element by element, as Kingma & Ba's Algorithm 1 writes Adam,
    climbing (``+``) instead of descending; ``moments`` holds m_<name>, v_<name>."""
    for k in params:
        flat_p, flat_g = params[k].reshape(-1), grads[k].reshape(-1)
        flat_m, flat_v = moments[f"m_{k}"].reshape(-1), moments[f"v_{k}"].reshape(-1)
        for i in range(flat_p.size):
            flat_m[i] = beta1 * flat_m[i] + (1 - beta1) * flat_g[i]
            flat_v[i] = beta2 * flat_v[i] + (1 - beta2) * flat_g[i] ** 2
            m_hat = flat_m[i] / (1 - beta1**step)
            v_hat = flat_v[i] / (1 - beta2**step)
            flat_p[i] += lr * m_hat / (np.sqrt(v_hat) + eps)


def clip_loop(grads: dict[str, np.ndarray], max_norm: float) -> dict[str, np.ndarray]:
    """Every entry times min(1, max_norm / norm), the norm summed entry by entry
    in Python floats over all the arrays."""
    total = 0.0
    for g in grads.values():
        for value in g.reshape(-1):
            total += float(value) ** 2
    norm = total**0.5
    scale = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return {k: np.array([float(v) * scale for v in g.reshape(-1)]).reshape(g.shape)
            for k, g in grads.items()}  # fmt: skip


# -- the update's returns as pongxp computed them before issue 16 (the oracle) ---
# Vectorised like today's code but by other means: an argsort for the next point
# and an (episodes x steps) one-hot matrix for per-episode sums, O(E * T).
def discounted_returns_argsort(rewards: Any, episode_id: Any, gamma: float, xp: Any) -> Any:
    """G[t] = gamma**(n - t) * r[n], n the next boundary, found with an argsort."""
    n_steps = rewards.shape[0]
    index = xp.arange(n_steps, dtype=xp.int64)
    last_of_episode = xp.concat([episode_id[1:] != episode_id[:-1], xp.asarray([True])])
    boundary = (rewards != 0) | last_of_episode
    counts = xp.astype(boundary, xp.int64)
    boundaries_before = xp.cumulative_sum(counts) - counts
    positions = xp.argsort(xp.where(boundary, index, index + n_steps))
    next_boundary = xp.take(positions, boundaries_before)
    distance = xp.astype(next_boundary - index, rewards.dtype)
    return xp.pow(xp.asarray(gamma, dtype=rewards.dtype), distance) * xp.take(
        rewards, next_boundary
    )


def standardize_per_episode_onehot(values: Any, episode_id: Any, num_episodes: int, xp: Any) -> Any:
    """Per-episode standardisation through an (E, T) one-hot membership matrix."""
    member = xp.astype(
        episode_id[None, :] == xp.arange(num_episodes, dtype=episode_id.dtype)[:, None],
        values.dtype,
    )
    count = xp.sum(member, axis=1)
    mean = xp.take((member @ values) / count, episode_id)
    centred = values - mean
    std = xp.take(xp.sqrt((member @ (centred * centred)) / count), episode_id)
    return centred / xp.where(std > 0, std, xp.ones_like(std))


def central_differences(
    objective: Callable[[dict[str, np.ndarray]], float],
    params: dict[str, np.ndarray],
    checks: Sequence[tuple[str, tuple[int, ...]]],
    eps: float = 1e-6,
) -> list[float]:
    """d objective / d params[name][index] for each (name, index) in ``checks``,
    by central differences: the oracle for analytic gradients."""
    out = []
    for name, index in checks:
        plus = {k: v.copy() for k, v in params.items()}
        minus = {k: v.copy() for k, v in params.items()}
        plus[name][index] += eps
        minus[name][index] -= eps
        out.append((objective(plus) - objective(minus)) / (2 * eps))
    return out
