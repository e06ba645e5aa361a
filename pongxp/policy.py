"""The 2-layer policy network: init, forward and backward, in any ``xp``.

Weights are a dict ``{"W1": (H, D), "W2": (H,)}``, no biases. The network
outputs p = P(action 2, up) = sigmoid(W2 . relu(W1 x)).
"""

from __future__ import annotations

import math
from typing import Any

Params = dict[str, Any]


def init_params(rng: Any, hidden: int, input_size: int) -> Params:
    """Xavier-initialised weights drawn on the host from a seeded generator.

    Drawing on the host (a ``numpy.random.Generator``) gives CPU and GPU runs
    identical starting weights; the caller moves them to the device.

    Returns:
        {"W1": (hidden, input_size) float64, "W2": (hidden,) float64}, host arrays.
    """
    return {
        "W1": rng.standard_normal((hidden, input_size)) / math.sqrt(input_size),
        "W2": rng.standard_normal(hidden) / math.sqrt(hidden),
    }


def sigmoid(logit: Any, xp: Any) -> Any:
    """Logistic function that never overflows: exp() only sees -|logit|."""
    z = xp.exp(-xp.abs(logit))
    return xp.where(logit >= 0, 1 / (1 + z), z / (1 + z))


def forward(params: Params, frames: Any, xp: Any) -> tuple[Any, Any]:
    """Forward pass over T stacked steps.

    Args:
        frames: (T, D) matrix (dense ``xp`` array or CSR sparse) of frame differences.

    Returns:
        hidden: (T, H) post-ReLU activations; p_up: (T,) probabilities of up.
        Both in the weights' dtype.
    """
    hidden = xp.maximum(frames @ xp.permute_dims(params["W1"], (1, 0)), 0)
    return hidden, sigmoid(hidden @ params["W2"], xp)


def step_up_probability(w1_t: Any, w2: Any, cols: Any, signs: Any, xp: Any) -> Any:
    """p(up) for one step, reading only the columns where the frame changed.

    Args:
        w1_t: (D, H) transposed W1 (rows gathered contiguously).
        w2: (H,).
        cols: (k,) int indices of the non-zero inputs; signs: (k,) their values.

    Returns:
        0-d array, the probability of action 2.
    """
    rows = xp.take(w1_t, cols, axis=0)  # (k, H)
    hidden = xp.maximum(xp.astype(signs, w1_t.dtype) @ rows, 0)
    return sigmoid(xp.vecdot(hidden, w2), xp)


def backward(params: Params, frames: Any, hidden: Any, weight: Any, xp: Any) -> Params:
    """Gradients of sum_t weight[t] * logit[t] with respect to W1 and W2.

    With ``weight = advantage * (y - p)`` this is the policy gradient of the
    log-likelihood of the actions taken.

    Args:
        frames: (T, D) inputs X (dense or CSR), passed in explicitly.
        hidden: (T, H) activations from ``forward``.
        weight: (T,) per-step factor on the logit gradient.

    Returns:
        {"W1": (H, D), "W2": (H,)} in the weights' dtype.
    """
    d_w2 = xp.permute_dims(hidden, (1, 0)) @ weight
    d_hidden = weight[:, None] * params["W2"][None, :]
    d_hidden = xp.where(hidden > 0, d_hidden, xp.zeros_like(d_hidden))  # ReLU gate
    # dW1 = dh^T X, computed as (X^T dh)^T so a sparse X stays on the left.
    d_w1 = xp.permute_dims(frames.T @ d_hidden, (1, 0))
    return {"W1": d_w1, "W2": d_w2}
