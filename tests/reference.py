"""Plain-loop NumPy references, written the way the tutorial states the method.

Deliberately naive (per-step loops, per-episode accumulation) so the fast,
vectorised, device-agnostic code in pongxp is checked against something
obviously right.
"""

from __future__ import annotations

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
