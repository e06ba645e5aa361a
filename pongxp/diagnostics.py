"""What a batch says about the policy that played it, for TensorBoard.

The late phase of a run (games of ~7,500 steps, running reward -5 to 0) is
slow; these figures show why: how sure the policy has become (its entropy
and how far p(up) is from 1/2), how likely it found the actions it took, and
how far one RMSProp step moves the weights. Each is one number per batch,
computed on the device from the batch's own steps with the weights that
played them; reading them costs one forward pass and one transfer.
"""

from __future__ import annotations

from typing import Any

from pongxp.backend import DeviceBatch
from pongxp.policy import Params, forward

#: The figures ``batch_figures`` returns, in order, with their TensorBoard tags.
TAGS = (
    "policy/entropy",
    "policy/abs_p_minus_half",
    "policy/mean_log_prob",
    "update/relative_step_W1",
    "update/relative_step_W2",
)


def batch_figures(before: Params, after: Params, batch: DeviceBatch, xp: Any) -> Any:
    """The batch's policy figures and the update's relative step sizes.

    Args:
        before: the weights that played the batch; after: the updated weights.
        batch: the batch on the device (T steps).

    Returns:
        (5,) array in the weights' dtype, on their device, in ``TAGS`` order:
        the policy's mean entropy in nats (log 2 = 0.693 for a coin flip),
        the mean |p(up) - 1/2|, the mean log-probability of the actions
        taken, and ||W_after - W_before|| / ||W_before|| for W1 and W2.
    """
    _, p_up = forward(before, batch.frames, xp)
    # Clipped so that p = 0 or 1 exactly (float32 saturates) gives 0 * log(0) = 0.
    tiny = xp.finfo(p_up.dtype).smallest_normal
    p = xp.clip(p_up, tiny, 1.0)
    q = xp.clip(1 - p_up, tiny, 1.0)
    entropy = -(p_up * xp.log(p) + (1 - p_up) * xp.log(q))
    taken = xp.where(batch.ups > 0, p, q)
    steps = [
        xp.linalg.vector_norm(xp.reshape(after[k] - before[k], (-1,)))
        / xp.linalg.vector_norm(xp.reshape(before[k], (-1,)))
        for k in ("W1", "W2")
    ]
    return xp.stack([xp.mean(entropy), xp.mean(xp.abs(p_up - 0.5)), xp.mean(xp.log(taken)), *steps])
