"""The training state at a batch boundary, shared by the loop and what it logs.

Its own module so that ``tensorboard_log`` (which reads two of them per batch)
and ``trainer`` (which makes them) both import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Committed:
    """Training state at a batch boundary: what a checkpoint holds, weights on the device."""

    params: dict[str, Any]
    cache: dict[str, Any]  # the optimizer's state (optim.init_state): RMSProp's or Adam's
    episode: int
    running_reward: float
    total_steps: int
    elapsed: float
    streams: list[dict[str, Any]]  # one per slot of a batch (``workers``)
    # total_steps as logged with the last episode: less than total_steps when a
    # batch of steps played on after it (``slot_share``).
    logged_steps: int = 0
    # Updates ``cache`` has taken since it started from zero: Adam's bias
    # correction needs it (its t); counted for RMSProp too.
    updates: int = 0
