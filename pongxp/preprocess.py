"""Screen -> network input, on the host, per step of the emulator.

The network sees the difference of two consecutive preprocessed frames, so it
gets motion (ball direction) from a single input vector.
"""

from __future__ import annotations

import numpy as np

#: First-channel (red) values of Pong's two background colours.
BACKGROUND = (144, 109)
#: Rows of the playing field; above is the score, below the bottom wall.
TOP, BOTTOM = 35, 195

# Lookup table: a pixel is 1 unless it is black or one of the backgrounds.
_FOREGROUND = np.ones(256, dtype=np.uint8)
_FOREGROUND[[0, *BACKGROUND]] = 0


def preprocess(frame: np.ndarray) -> np.ndarray:
    """Crop, downsample and binarise one RGB screen.

    Args:
        frame: (210, 160, 3) uint8 RGB observation.

    Returns:
        (6400,) uint8, 1 for paddles and ball, 0 for background.
    """
    if frame.shape != (210, 160, 3):
        raise ValueError(f"expected a (210, 160, 3) Pong screen, got shape {frame.shape}")
    # Every second row and column of the red channel: 160x160 field -> 80x80.
    return _FOREGROUND[frame[TOP:BOTTOM:2, ::2, 0]].ravel()


def frame_difference(current: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero entries of ``current - previous`` for two preprocessed frames.

    Args:
        current, previous: (6400,) uint8 in {0, 1}.

    Returns:
        cols: (k,) int32 indices where the frames differ, ascending.
        signs: (k,) int8, +1 where a pixel appeared, -1 where one vanished.
    """
    diff = current.view(np.int8) - previous.view(np.int8)
    cols = np.flatnonzero(diff).astype(np.int32)
    return cols, diff[cols]
