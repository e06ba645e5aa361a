"""One policy-gradient update over a batch of episodes, all on the device.

The rollouts kept only each step's input and action. The weights did not
change during the batch, so the forward pass is recomputed here in one batched
product instead of shipping every step's hidden activations to the device.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pongxp.backend import DeviceBatch
from pongxp.optim import clip_by_global_norm, optimizer_step
from pongxp.policy import Params, backward, forward
from pongxp.returns import discounted_returns, standardize_per_episode


def policy_gradient(
    params: Params,
    batch: DeviceBatch,
    gamma: float,
    xp: Any,
    entropy_bonus: float = 0.0,
    standardize: str = "episode",
) -> Params:
    """Sum over the batch's episodes of the advantage-weighted log-likelihood gradient.

    Args:
        standardize: whose mean and spread the returns are standardised by:
            each ``"episode"``'s (Karpathy's; in a batch of steps, each piece
            of an episode a slot played), or the whole ``"batch"``'s.
        entropy_bonus: beta of an addition to REINFORCE (0: none, the method
            itself): the gradient of beta * sum_t H(p_t) as well, where H is the
            policy's entropy at step t, which slows its becoming deterministic.

    Returns:
        {"W1": (H, D), "W2": (H,)} gradients in the weights' dtype.
    """
    hidden, p_up = forward(params, batch.frames, xp)
    returns = discounted_returns(batch.rewards, batch.episode_id, gamma, xp)
    if standardize == "batch":
        advantage = standardize_per_episode(returns, xp.zeros_like(batch.episode_id), 1, xp)
    else:
        advantage = standardize_per_episode(returns, batch.episode_id, batch.num_episodes, xp)
    # (y - p) is d log pi(action) / d logit for a Bernoulli policy.
    weight = (batch.ups - p_up) * advantage
    if entropy_bonus:
        # dH/dlogit = -logit * p * (1 - p) for H = -p log p - (1 - p) log(1 - p).
        logit = hidden @ params["W2"]
        weight = weight - entropy_bonus * logit * p_up * (1 - p_up)
    return backward(params, batch.frames, hidden, weight, xp)


def apply_update(
    params: Params,
    cache: Params,
    batch: DeviceBatch,
    gamma: float,
    learning_rate: float,
    decay_rate: float,
    xp: Any,
    entropy_bonus: float = 0.0,
    standardize: str = "episode",
    optimizer: str = "rmsprop",
    step: int = 1,
    clip_norm: float = 0.0,
) -> tuple[Params, Params, Params]:
    """Gradient, optional clipping, and one optimiser step.

    Args:
        cache: the optimiser's state (``optim.init_state``): RMSProp's cache,
            or Adam's moments.
        optimizer: "rmsprop" (Karpathy's) or "adam".
        step: this update's number with this state, from 1 (Adam's t).
        clip_norm: C > 0 scales the gradient to global norm at most C before
            the step (``optim.clip_by_global_norm``); 0: no clipping.

    Returns:
        (new params, new state, grads); grads as computed, before any clipping
        (what TensorBoard's gradient norms show).
    """
    grads = policy_gradient(params, batch, gamma, xp, entropy_bonus, standardize)
    used = clip_by_global_norm(grads, clip_norm, xp) if clip_norm else grads
    new_params, new_cache = optimizer_step(
        optimizer, params, used, cache, step, learning_rate, decay_rate, xp
    )
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
