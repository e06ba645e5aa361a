"""Discounted returns with a reset at every point, and their standardisation.

Both work on a whole batch at once with ``xp`` array operations: no Python loop
over steps and no data-dependent shapes, so on a GPU they queue kernels without
waiting for the device.
"""

from __future__ import annotations

from typing import Any


def discounted_returns(rewards: Any, episode_id: Any, gamma: float, xp: Any) -> Any:
    """G[t] = r[t] + gamma * G[t+1], restarting at every non-zero reward and episode end.

    Each point in Pong is its own game, so the sum resets wherever r[t] != 0.
    Within a point every reward is zero except the one that ends it, which
    gives the closed form G[t] = gamma**(n - t) * r[n], where n is the first
    boundary (non-zero reward or last step of the episode) at or after t.
    Steps after an episode's last point (a truncated episode) get G = 0.

    Args:
        rewards: (T,) float rewards of stacked episodes.
        episode_id: (T,) int, non-decreasing episode index of each step.
        gamma: discount factor in (0, 1].

    Returns:
        (T,) returns in the rewards' dtype.
    """
    n_steps = rewards.shape[0]
    index = xp.arange(n_steps, dtype=xp.int64)
    last_of_episode = xp.concat([episode_id[1:] != episode_id[:-1], xp.asarray([True])])
    boundary = (rewards != 0) | last_of_episode
    counts = xp.astype(boundary, xp.int64)
    boundaries_before = xp.cumulative_sum(counts) - counts
    # Sorting boundaries to the front, in order, lists their positions; the k-th
    # boundary is where a step with k boundaries before it has its next one.
    positions = xp.argsort(xp.where(boundary, index, index + n_steps))
    next_boundary = xp.take(positions, boundaries_before)
    distance = xp.astype(next_boundary - index, rewards.dtype)
    return xp.pow(xp.asarray(gamma, dtype=rewards.dtype), distance) * xp.take(
        rewards, next_boundary
    )


def standardize_per_episode(values: Any, episode_id: Any, num_episodes: int, xp: Any) -> Any:
    """Subtract each episode's mean and divide by its standard deviation.

    An episode whose values are all equal (std = 0) comes out as zeros, not NaN.

    Args:
        values: (T,) float.
        episode_id: (T,) int in 0..num_episodes-1.

    Returns:
        (T,) standardised values, same dtype.
    """
    # (E, T) one-hot membership: per-episode sums become one matrix product.
    member = xp.astype(
        episode_id[None, :] == xp.arange(num_episodes, dtype=episode_id.dtype)[:, None],
        values.dtype,
    )
    count = xp.sum(member, axis=1)
    mean = xp.take((member @ values) / count, episode_id)
    centred = values - mean
    std = xp.take(xp.sqrt((member @ (centred * centred)) / count), episode_id)
    return centred / xp.where(std > 0, std, xp.ones_like(std))
