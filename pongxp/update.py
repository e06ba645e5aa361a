"""One policy-gradient update over a batch of episodes, all on the device.

The rollouts kept only each step's input and action. The weights did not
change during the batch, so the forward pass is recomputed here in one batched
product instead of shipping every step's hidden activations to the device.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pongxp.backend import DeviceBatch
from pongxp.optim import rmsprop_step
from pongxp.policy import Params, backward, forward
from pongxp.returns import discounted_returns, standardize_per_episode


def policy_gradient(params: Params, batch: DeviceBatch, gamma: float, xp: Any) -> Params:
    """Sum over the batch's episodes of the advantage-weighted log-likelihood gradient.

    Returns:
        {"W1": (H, D), "W2": (H,)} gradients in the weights' dtype.
    """
    hidden, p_up = forward(params, batch.frames, xp)
    returns = discounted_returns(batch.rewards, batch.episode_id, gamma, xp)
    advantage = standardize_per_episode(returns, batch.episode_id, batch.num_episodes, xp)
    # (y - p) is d log pi(action) / d logit for a Bernoulli policy.
    return backward(params, batch.frames, hidden, (batch.ups - p_up) * advantage, xp)


def apply_update(
    params: Params,
    cache: Params,
    batch: DeviceBatch,
    gamma: float,
    learning_rate: float,
    decay_rate: float,
    xp: Any,
) -> tuple[Params, Params, Params]:
    """Gradient + RMSProp. Returns (new params, new cache, grads)."""
    grads = policy_gradient(params, batch, gamma, xp)
    new_params, new_cache = rmsprop_step(params, grads, cache, learning_rate, decay_rate, xp)
    return new_params, new_cache, grads


def all_finite(arrays: Params | Iterable[Any], xp: Any) -> bool:
    """True when every entry of every array is finite.

    Args:
        arrays: a dict of arrays (its values are checked) or any iterable of arrays.

    Returns:
        A Python bool: one read from the device per call, however many arrays.
    """
    values = arrays.values() if isinstance(arrays, Mapping) else arrays
    flags = [xp.all(xp.isfinite(a)) for a in values]
    return bool(xp.all(xp.stack(flags)))
