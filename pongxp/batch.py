"""Episodes as compact host arrays, and stacking them into one update batch.

A step's network input is a frame difference with values -1/0/+1 of which only
a few dozen of 6400 are non-zero, so steps are kept in compressed sparse row
(CSR) form: ~26 int32 column indices and int8 signs a step instead of 6400
floats. One episode and a batch of episodes are the same type.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HostBatch:
    """T steps from E episodes, stacked in time order, on the host.

    Attributes:
        indptr: (T+1,) int32. Row t's non-zeros are ``cols[indptr[t]:indptr[t+1]]``.
        cols: (nnz,) int32 column indices into the 6400 pixels.
        signs: (nnz,) int8, -1 or +1, the frame difference at those columns.
        ups: (T,) uint8, 1 where the action was 2 (up), 0 for 3 (down).
        rewards: (T,) int8, the reward after each step's action (-1, 0 or +1).
        lengths: (E,) int64, steps per episode; sums to T.
    """

    indptr: np.ndarray
    cols: np.ndarray
    signs: np.ndarray
    ups: np.ndarray
    rewards: np.ndarray
    lengths: np.ndarray

    @property
    def num_steps(self) -> int:
        return int(self.ups.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def total_reward(self) -> int:
        return int(self.rewards.sum(dtype=np.int64))

    def dense_frames(self, input_size: int) -> np.ndarray:
        """(T, input_size) int8 frame differences, for tests and references."""
        out = np.zeros((self.num_steps, input_size), dtype=np.int8)
        rows = np.repeat(np.arange(self.num_steps), np.diff(self.indptr))
        out[rows, self.cols] = self.signs
        return out

    def episodes(self) -> list[HostBatch]:
        """Split back into one HostBatch per episode."""
        out = []
        starts = np.concatenate(([0], np.cumsum(self.lengths)))
        for a, b in itertools.pairwise(starts):
            lo, hi = self.indptr[a], self.indptr[b]
            out.append(
                HostBatch(
                    indptr=(self.indptr[a : b + 1] - lo).astype(np.int32),
                    cols=self.cols[lo:hi],
                    signs=self.signs[lo:hi],
                    ups=self.ups[a:b],
                    rewards=self.rewards[a:b],
                    lengths=np.array([b - a], dtype=np.int64),
                )
            )
        return out


def stack(parts: Sequence[HostBatch]) -> HostBatch:
    """Concatenate episodes (or batches) in order into one HostBatch."""
    if not parts:
        raise ValueError("stack() needs at least one episode")
    offsets = np.cumsum([0] + [p.cols.shape[0] for p in parts[:-1]])
    indptr = np.concatenate(
        [parts[0].indptr[:1]] + [p.indptr[1:] + off for p, off in zip(parts, offsets, strict=True)]
    )
    if indptr[-1] > np.iinfo(np.int32).max:
        raise ValueError("batch has more than 2**31 non-zeros; use a smaller --batch-size")
    return HostBatch(
        indptr=indptr.astype(np.int32),
        cols=np.concatenate([p.cols for p in parts]),
        signs=np.concatenate([p.signs for p in parts]),
        ups=np.concatenate([p.ups for p in parts]),
        rewards=np.concatenate([p.rewards for p in parts]),
        lengths=np.concatenate([p.lengths for p in parts]),
    )
