"""Screen -> network input, on the host, per step of the emulator.

The network sees the difference of two consecutive preprocessed frames, so it
gets motion (ball direction) from a single input vector.

Two ways in, one result:

- ``preprocess`` reads the RGB screen that Gymnasium returns. It states the rule.
- ``PaletteFrames`` reads the ALE's raw screen of palette indices, which the
  emulator hands over with a plain copy (~1 us, against ~33 us for the RGB
  conversion it replaces). Which palette index is foreground is learnt from the
  ALE's own RGB output, through ``is_foreground`` on the red channel, the first
  time that index is seen. So it is the RGB rule, exactly, on every frame:
  there is no second rule to keep in step (tests check it on real frames).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: First-channel (red) values of Pong's two background colours.
BACKGROUND = (144, 109)
#: Rows of the playing field; above is the score, below the bottom wall.
TOP, BOTTOM = 35, 195
#: Side of the square, downsampled field; the network input has SIDE * SIDE pixels.
SIDE = 80

# Lookup table: a pixel is 1 unless it is black or one of the backgrounds.
_FOREGROUND = np.ones(256, dtype=np.uint8)
_FOREGROUND[[0, *BACKGROUND]] = 0


def is_foreground(red: np.ndarray) -> np.ndarray:
    """The binarisation rule on red-channel values: uint8 in -> uint8 0/1, same shape."""
    return _FOREGROUND[red]


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
    return is_foreground(frame[TOP:BOTTOM:2, ::2, 0]).ravel()


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


#: Table entry for a palette index whose colour has not been seen yet.
_UNKNOWN = 2


class PaletteFrames:
    """The network inputs of an emulator's frames, read as palette indices.

    Gives the same ``(cols, signs)`` as ``preprocess`` + ``frame_difference``
    on the RGB screens, with less work per step:

    - the ALE copies out its raw screen of palette indices (~1 us) instead of
      converting it to RGB (~33 us);
    - consecutive screens are compared as raw indices first, and the rule is
      applied only where an index changed: a few dozen pixels, not 6400. A
      pixel whose index did not change cannot change its 0/1 value.

    Which palette index is foreground is learnt from the emulator's own RGB
    output through ``is_foreground`` on the red channel, the first time an
    index shows up. So this is the RGB rule, exactly, with no second table of
    colours to keep in step (tests compare both on real frames).

    Args:
        get_screen: ``get_screen(out)`` fills a (210, 160) uint8 array with
            palette indices (``ale.getScreen``).
        get_rgb: returns the (210, 160, 3) uint8 RGB screen of the same frame
            (``ale.getScreenRGB``); called when a new colour appears (a few
            times per actor), not per step.
    """

    def __init__(
        self, get_screen: Callable[[np.ndarray], object], get_rgb: Callable[[], np.ndarray]
    ) -> None:
        self._get_screen = get_screen
        self._get_rgb = get_rgb
        self._screens = np.zeros((2, 210, 160), dtype=np.uint8)  # previous and next frame
        self._flat = self._screens.reshape(2, -1)
        # The field's kept pixels are the first of each horizontal pair, so
        # comparing pairs (uint16, contiguous rows) finds every changed kept
        # pixel in one fast pass; a change in the other pixel of a pair only
        # adds a candidate that the rule below turns into a zero.
        self._pairs = [s.view(np.uint16)[TOP:BOTTOM:2] for s in self._screens]  # (80, 80)
        self._changed = np.zeros((SIDE, SIDE), dtype=bool)
        # Offset in a flat screen of each of the 6400 inputs, in input order.
        rows = np.arange(TOP, BOTTOM, 2)[:, None] * self._screens.shape[2]
        self._offset = (rows + np.arange(0, 160, 2)[None, :]).ravel()
        self._foreground = np.full(256, _UNKNOWN, dtype=np.int8)  # by palette index
        # _step[old, new]: the input value (-1, 0, +1) when a pixel's palette
        # index goes from old to new; _UNKNOWN where either colour is unseen.
        self._step = np.full((256, 256), _UNKNOWN, dtype=np.int8)
        self._previous = 0  # which of the two screens holds the previous frame
        # The next frame is already in its buffer (read by ``snapshot`` or set
        # by ``restore``), not to be read from the emulator again.
        self._pending = False

    def reset(self) -> None:
        """Read an episode's first frame; it becomes the previous frame."""
        self._previous = 0
        self._pending = False
        self._get_screen(self._screens[0])
        self._learn_new(self._screens[0])

    def snapshot(self) -> dict[str, np.ndarray]:
        """What a game paused between two steps continues from, for ``restore``.

        An emulator restored from a saved state does not restore its screen, so
        the next frame is read now, while the emulator still shows it, and its
        colours are learnt now, while its RGB screen can still be read.

        Returns:
            {"previous": (210, 160) uint8, "next": (210, 160) uint8 palette
            screens, "foreground": (256,) int8 the colours learnt so far}.
        """
        nxt = 1 - self._previous
        if not self._pending:
            self._get_screen(self._screens[nxt])
            self._learn_new(self._screens[nxt])
            self._pending = True
        return {
            "previous": self._screens[self._previous].copy(),
            "next": self._screens[nxt].copy(),
            "foreground": self._foreground.copy(),
        }

    def restore(self, saved: dict[str, np.ndarray]) -> None:
        """Continue from a ``snapshot`` (taken by this or another emulator's frames).

        Colours the snapshot's frames hold were learnt by its taker, so they
        are taken from its table where this one has not learnt them yet.
        """
        self._previous, self._pending = 0, True
        self._screens[0] = saved["previous"]
        self._screens[1] = saved["next"]
        theirs = np.asarray(saved["foreground"], dtype=np.int8)
        new = (self._foreground == _UNKNOWN) & (theirs != _UNKNOWN)
        if new.any():
            self._foreground[new] = theirs[new]
            self._rebuild_steps()

    def step(self) -> tuple[np.ndarray, np.ndarray]:
        """Read the next frame and return its difference to the previous one.

        Returns:
            cols: (k,) intp (int64 on 64-bit) indices into the 6400 inputs, ascending.
            signs: (k,) int8, +1 where a pixel appeared, -1 where one vanished.
        """
        prev, nxt = self._previous, 1 - self._previous
        if self._pending:
            self._pending = False
        else:
            self._get_screen(self._screens[nxt])
        self._previous = nxt
        np.not_equal(self._pairs[nxt], self._pairs[prev], out=self._changed)
        (changed,) = self._changed.reshape(-1).nonzero()
        index = self._flat[:, self._offset[changed]]  # (2, m) palette indices, both frames
        diff = self._step[index[prev], index[nxt]]
        # A byte search is the cheapest test for a sentinel in a few dozen values.
        if _UNKNOWN in diff.tobytes():
            self._learn_new(self._screens[nxt])
            diff = self._step[index[prev], index[nxt]]
            if _UNKNOWN in diff.tobytes():  # an old pixel of unseen colour: cannot happen
                raise RuntimeError("a changed pixel's previous colour was never learnt")
        # A pixel going from one background colour to another is no input.
        (keep,) = diff.nonzero()
        return changed[keep], diff[keep]

    def _learn_new(self, screen: np.ndarray) -> None:
        """Learn the colours of the field of ``screen`` (the latest frame) not seen before."""
        field = screen[TOP:BOTTOM]
        if not np.any(self._foreground[field] == _UNKNOWN):
            return
        red = self._get_rgb()[TOP:BOTTOM, :, 0]
        for value in np.unique(field):
            reds = np.unique(red[field == value])
            if reds.shape[0] != 1:  # one palette index has one colour; anything else is a bug
                raise RuntimeError(f"palette index {value} shows red values {reds.tolist()}")
            self._foreground[value] = is_foreground(reds)[0]
        self._rebuild_steps()

    def _rebuild_steps(self) -> None:
        known = self._foreground != _UNKNOWN
        self._step[...] = _UNKNOWN
        both = known[:, None] & known[None, :]
        self._step[both] = (self._foreground[None, :] - self._foreground[:, None])[both]
