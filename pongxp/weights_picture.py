"""What the network learned, as a picture: each row of W1 drawn as an 80x80 image.

Row i of W1 holds hidden unit i's weight on each of the 6400 input pixels, in
the order the preprocessed 80x80 field is flattened. Drawn back on that field,
a row shows which changes on the screen excite the unit (white: a pixel that
appears there raises its activation) and which inhibit it (black). This is
the picture of Karpathy's post "Deep Reinforcement Learning: Pong from Pixels"
(2016), where trained units show the ball's tracks and the paddle's positions.

Each tile is scaled on its own: its largest absolute weight is full white or
black and zero is mid grey, so units with small weights stay visible. Tiles
are separated by a blue line, a colour no weight takes.

Writing the PNG needs Pillow, which the ``plot`` extra installs (with matplotlib).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pongxp import checkpoint
from pongxp.config import INPUT_SIZE, ConfigError, check_number
from pongxp.extras import require
from pongxp.preprocess import SIDE
from pongxp.run_folder import name_of

#: Upscale limit: at 8 the 200 units of a default agent make a 13,000-pixel-wide image.
MAX_SCALE = 8
#: Tiles in one row of the picture unless asked otherwise.
COLUMNS = 20
GAP = 2  # pixels between tiles, before upscaling
_GAP_COLOUR = np.array([40, 80, 160], dtype=np.uint8)


@dataclass(frozen=True)
class Picture:
    """What ``write_picture`` wrote."""

    path: Path
    units: int  # rows of W1 drawn
    width: int  # pixels
    height: int
    trained_episodes: int  # the file's episode counter


def tile_grid(w1: np.ndarray, units: int | None = None, columns: int = COLUMNS) -> np.ndarray:
    """Rows of W1 as 80x80 grey tiles on a grid, as an RGB image.

    Args:
        w1: (H, 6400) float weights (host array).
        units: draw rows 0..units-1 (default: all H).
        columns: tiles per row of the grid; fewer when there are fewer tiles.

    Returns:
        (rows * (80 + GAP) + GAP, cols * (80 + GAP) + GAP, 3) uint8 RGB, where
        tile i sits at grid row i // columns, column i % columns; within it pixel
        (r, c) shows weight w1[i, r * 80 + c]: 128 for 0, 255 for the row's
        largest absolute weight if positive, 0 for it if negative.

    Raises:
        ConfigError: a ``units`` or ``columns`` out of range.
    """
    if w1.ndim != 2 or w1.shape[1] != INPUT_SIZE:
        raise ConfigError(f"W1 must have shape (H, {INPUT_SIZE}), got {w1.shape}")
    hidden = w1.shape[0]
    units = hidden if units is None else units
    check_number("--units", units, 1, hidden, note=f" (the network has {hidden} hidden units)")
    check_number("--columns", columns, 1)
    columns = min(columns, units)
    rows = -(-units // columns)
    weights = w1[:units].astype(np.float64)
    peak = np.max(np.abs(weights), axis=1, keepdims=True)
    # An all-zero row (a unit that never learned) stays grey rather than dividing by 0.
    scaled = weights / np.where(peak > 0, peak, 1.0)
    grey = np.rint(127.5 + 127.5 * scaled).astype(np.uint8).reshape(units, SIDE, SIDE)
    step = SIDE + GAP
    image = np.broadcast_to(_GAP_COLOUR, (rows * step + GAP, columns * step + GAP, 3)).copy()
    for i in range(units):
        top, left = GAP + (i // columns) * step, GAP + (i % columns) * step
        image[top : top + SIDE, left : left + SIDE] = grey[i][:, :, None]
    return image


def default_output(agent_path: str | os.PathLike[str]) -> Path:
    """``pretrained/pong-v0.npz`` -> ``runs/pong-v0-weights.png``: into runs/, like
    every default output, so a tracked folder does not fill up with pictures."""
    return Path("runs", f"{name_of(agent_path)}-weights.png")


def check_options(output: str | os.PathLike[str], columns: int = COLUMNS, scale: int = 1) -> Path:
    """Check the picture's name, flags and directory before any file is read.

    Raises:
        ConfigError: a bad flag, a name not ending in .png, an unwritable path.
        MissingExtraError: Pillow is not installed.
    """
    check_number("--columns", columns, 1)
    check_number("--scale", scale, 1, MAX_SCALE)
    path = Path(output)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"the weights picture {path} must end in .png")
    require("PIL.Image", "plot", "the weights picture")
    checkpoint.check_writable(path, "weights picture", ConfigError)
    return path


def write_picture(
    agent_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    units: int | None = None,
    columns: int = COLUMNS,
    scale: int = 1,
) -> Picture:
    """Draw the W1 of an agent file or training checkpoint into a PNG.

    The PNG is written under a temporary name and renamed into place, so an
    existing picture is replaced whole or not at all.

    Args:
        output: the ``.png`` to write; default ``runs/<agent name>-weights.png``.
        units, columns: as for ``tile_grid``.
        scale: integer upscale, nearest neighbour (keeps the pixels sharp).

    Raises:
        CheckpointError: the file is missing or not a pongxp checkpoint.
        ConfigError: a bad flag or output (before the file is read).
        MissingExtraError: Pillow is not installed.
    """
    path = check_options(default_output(agent_path) if output is None else output, columns, scale)
    ckpt = checkpoint.load(agent_path)
    image = tile_grid(ckpt.params["W1"], units, columns)
    if scale != 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    pil_image = require("PIL.Image", "plot", "the weights picture")
    with checkpoint.replaced_whole(path, "weights picture", ConfigError) as tmp:
        pil_image.fromarray(image).save(tmp, format="PNG", optimize=True)
    drawn = ckpt.params["W1"].shape[0] if units is None else units
    return Picture(path, drawn, image.shape[1], image.shape[0], ckpt.episode)
