"""The optimisers, for gradient ascent, in any ``xp``: RMSProp (Karpathy's, the
default) and Adam (``--optimizer adam``, an addition to the tutorial's method);
and global-norm gradient clipping (``--clip-norm``).

Each optimiser keeps its state in one dict of arrays shaped like the weights
(``init_state``), so the trainer moves, checks and saves it without knowing
which optimiser made it. Every array is made from the inputs (``zeros_like``,
arithmetic on them), so it lives on their device; nothing is read back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EPSILON = 1e-5
#: Adam's moment decays and epsilon, as Kingma & Ba (2015) give them and as
#: PyTorch, optax and Keras default to, so runs compare with published Adam
#: runs. Epsilon only keeps 0 / 0 out of weights whose gradient has always been
#: zero (W1's columns for pixels never lit): a batch's gradient is a sum over
#: thousands of steps, far above 1e-8 wherever it is not exactly zero, so it
#: does not shape the step; 1e-8 is a normal float32, so float32 keeps it.
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8


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


def adam_step(
    params: dict[str, Any],
    grads: dict[str, Any],
    moments: dict[str, Any],
    step: int,
    learning_rate: float,
    xp: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One Adam ascent step for each parameter, with bias correction.

    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g**2
    W = W + lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)

    (``+``: pongxp climbs the objective, as ``rmsprop_step`` does.)

    Args:
        params, grads: dicts of same-shaped arrays (e.g. W1 (H, 6400), W2 (H,)).
        moments: ``m_<name>`` and ``v_<name>`` for each parameter, shaped and
            typed like it (``init_state("adam", ...)``): the moments before this step.
        step: t, the number of this step counting from 1 (the moments' age).
            A host int: the bias corrections are Python floats, so nothing
            is read from the device and float32 math stays float32.

    Returns:
        (new params, new moments); the inputs are not modified.
    """
    if step < 1:
        raise ValueError(f"Adam's step counts from 1, got {step}")
    correct1 = 1 - ADAM_BETA1**step
    correct2 = 1 - ADAM_BETA2**step
    new_params, new_moments = {}, {}
    for name, grad in grads.items():
        m = ADAM_BETA1 * moments[f"m_{name}"] + (1 - ADAM_BETA1) * grad
        v = ADAM_BETA2 * moments[f"v_{name}"] + (1 - ADAM_BETA2) * grad * grad
        new_moments[f"m_{name}"], new_moments[f"v_{name}"] = m, v
        step_size = (m / correct1) / (xp.sqrt(v / correct2) + ADAM_EPSILON)
        new_params[name] = params[name] + learning_rate * step_size
    return new_params, new_moments


def clip_by_global_norm(grads: dict[str, Any], max_norm: float, xp: Any) -> dict[str, Any]:
    """Scale every gradient by min(1, max_norm / ||g||), ||g|| the L2 norm of
    all of them together; on the device, with no read back.

    Args:
        grads: dict of arrays (e.g. W1 (H, 6400), W2 (H,)), one float dtype.
        max_norm: C > 0.

    Returns:
        The scaled gradients: the same direction, length at most C.

    A norm of 0 is left alone (C / max(norm, C) is then exactly 1, with no
    division by zero); a NaN norm gives NaN gradients, which the trainer's
    finiteness check reports.
    """
    total = sum(xp.sum(g * g) for g in grads.values())
    norm = xp.sqrt(total)
    # max(norm, C) without a scalar argument to xp.maximum (not every xp has one):
    # full_like makes C on norm's device, in its dtype.
    scale = max_norm / xp.where(norm > max_norm, norm, xp.full_like(norm, max_norm))
    return {name: g * scale for name, g in grads.items()}


def state_names(optimizer: str, param_names: Iterable[str]) -> list[str]:
    """The keys of ``optimizer``'s state for parameters ``param_names``: RMSProp's
    cache per parameter (``W1``), Adam's ``m_W1`` and ``v_W1``."""
    names = list(param_names)
    if optimizer == "rmsprop":
        return names
    if optimizer == "adam":
        return [f"{moment}_{name}" for moment in ("m", "v") for name in names]
    raise ValueError(f"unknown optimizer {optimizer!r}")


def init_state(optimizer: str, params: dict[str, Any], xp: Any) -> dict[str, Any]:
    """A fresh (zero) state of ``optimizer`` for ``params``, on their device
    (keys: ``state_names``)."""
    if optimizer == "rmsprop":
        return zeros_like_params(params, xp)
    state_names(optimizer, params)  # refuses an unknown optimizer
    return {
        f"{moment}_{name}": xp.zeros_like(value)
        for moment in ("m", "v")
        for name, value in params.items()
    }


def optimizer_step(
    optimizer: str,
    params: dict[str, Any],
    grads: dict[str, Any],
    state: dict[str, Any],
    step: int,
    learning_rate: float,
    decay_rate: float,
    xp: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One step of ``optimizer`` ("rmsprop" or "adam"): (new params, new state).

    Args:
        step: this update's number with this state, from 1 (Adam's t; RMSProp
            does not use it).
        decay_rate: RMSProp's cache decay (Adam has its own betas above).
    """
    if optimizer == "adam":
        return adam_step(params, grads, state, step, learning_rate, xp)
    return rmsprop_step(params, grads, state, learning_rate, decay_rate, xp)


def zeros_like_params(params: dict[str, Any], xp: Any) -> dict[str, Any]:
    """A zero RMSProp cache for ``params``."""
    return {name: xp.zeros_like(value) for name, value in params.items()}
