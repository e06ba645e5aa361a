"""RMSProp for gradient ascent, in any ``xp``."""

from __future__ import annotations

from typing import Any

EPSILON = 1e-5


def rmsprop_step(
    params: dict[str, Any],
    grads: dict[str, Any],
    cache: dict[str, Any],
    learning_rate: float,
    decay_rate: float,
    xp: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One RMSProp ascent step for each parameter.

    cache = decay * cache + (1 - decay) * g**2
    W     = W + lr * g / (sqrt(cache) + 1e-5)

    Args:
        params, grads, cache: dicts of same-shaped arrays, keyed alike.

    Returns:
        (new params, new cache); the inputs are not modified.
    """
    new_params, new_cache = {}, {}
    for name, grad in grads.items():
        c = decay_rate * cache[name] + (1 - decay_rate) * grad * grad
        new_cache[name] = c
        new_params[name] = params[name] + learning_rate * grad / (xp.sqrt(c) + EPSILON)
    return new_params, new_cache


def zeros_like_params(params: dict[str, Any], xp: Any) -> dict[str, Any]:
    """A zero RMSProp cache for ``params``."""
    return {name: xp.zeros_like(value) for name, value in params.items()}
