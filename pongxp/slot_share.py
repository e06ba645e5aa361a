"""Where a slot's share of a batch ends: the one rule of both batch modes.

A batch has ``--batch-size`` slots, each played from its own stream
(``workers``). What one slot plays in one batch is its *share*:

- whole episodes (the default, Karpathy's): the share is one episode, so a
  batch is ``--batch-size`` episodes and lasts as long as its longest game;
- a batch of steps (``--batch-steps S``): the share is at least
  ``quota = ceil(S / batch_size)`` steps and ends at the first point boundary
  (a non-zero reward, or the episode's end) at or after that. An episode that
  ends first is followed by a new one in the same share; one still going at
  the end is carried into the next batch in the slot's stream.

Ending only at a point boundary keeps each point's steps under one policy,
so the update stays on-policy, and the returns need no change: they already
restart at every point. Rollout actors (local processes and Ray alike) stop
by ``share_ends``; the trainer asks ``slot_quota`` for the quota.

A batch of steps never ends more episodes than the run still needs
(``episode_allowances``): near the end of a run each slot also stops at the end
of its last allowed episode (a point boundary too), so a run ends at exactly
its ``--episodes``, as one of whole episodes does. The allowances depend only on
the episodes done and the target, so a resumed run is still the run it would
have been; a run then given a larger ``--episodes`` on a resume is not the run
that had the larger target from the start (nor is one of whole episodes).
"""

from __future__ import annotations

import math


def slot_quota(batch_steps: int, slots: int) -> int | None:
    """Steps each slot plays at least per batch; None for whole episodes.

    Args:
        batch_steps: ``--batch-steps`` S, 0 for whole-episode batches.
        slots: ``--batch-size``, the slots of a batch.
    """
    return math.ceil(batch_steps / slots) if batch_steps > 0 else None


def episode_allowances(need: int, slots: int) -> list[int]:
    """How many episodes each slot of a batch may end when the run needs ``need``
    more: ``need`` split over the first ``min(slots, need)`` slots, the first ones
    taking one more where it does not divide; slots past those do not play.

    Far from the end these are more than a share ends anyway, so they change
    nothing; in the last batches they keep the run from ending more episodes
    than ``--episodes``.
    """
    count = min(slots, need)
    return [need // count + (1 if j < need % count else 0) for j in range(count)]


def share_ends(steps: int, quota: int | None, reward: float, episode_over: bool) -> bool:
    """Whether a slot's share ends after its latest step.

    Args:
        steps: steps played in this share so far, that step included.
        quota: ``slot_quota``'s value (None: whole episodes).
        reward: that step's reward; non-zero ends a point.
        episode_over: the step ended the episode.
    """
    if quota is None:
        return episode_over
    return steps >= quota and (reward != 0 or episode_over)
