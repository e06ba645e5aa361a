"""Learning curves from metrics logs, as an image (matplotlib, the ``plot`` extra).

One figure, a panel per x axis: episode reward (thin) and running reward
(bold) against episodes and against training wall time (the log's cumulative
``time``, which leaves out checkpoint writes and videos) by default, or
against emulator steps (``total_steps``), the fair axis for settings that
play different amounts per episode or per update. Each metrics file is one
run in its own colour, so runs compare on one plot: CPU vs GPU, two seeds,
two learning rates.

The output's suffix picks the format: any that matplotlib writes (PNG, SVG,
PDF, JPEG, WebP, ...). Name, size and writability are checked before any log
is read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pongxp import metrics
from pongxp.checkpoint import check_writable
from pongxp.config import ConfigError, check_number
from pongxp.extras import require
from pongxp.run_folder import name_of

KEYS = ("episode", "reward", "running_reward", "time")
#: What a panel can have on its x axis, and its label (time's carries its unit).
X_AXES = {"episode": "episode", "steps": "emulator steps", "time": "training wall time"}
DEFAULT_X = ("episode", "time")
# Image size limits in pixels: below the minimum the panels have no room for their
# labels; above the maximum the canvas alone is 400 MB (Agg's hard limit is 2**16).
MIN_SIZE = (200, 150)
MAX_SIDE = 10_000


class PlotError(ValueError):
    """A metrics file cannot be plotted; the message names it."""


@dataclass(frozen=True)
class Run:
    """One metrics log as columns, in episode order.

    Attributes:
        label: legend name.
        episode: (N,) int64. reward, running_reward, time: (N,) float64,
            time in seconds of training. steps: (N,) float64, emulator steps
            played by the end of each episode; NaN in a log without them.
    """

    label: str
    episode: np.ndarray
    reward: np.ndarray
    running_reward: np.ndarray
    time: np.ndarray
    steps: np.ndarray


def load_run(path: str | os.PathLike[str], label: str | None = None) -> Run:
    """Read one metrics JSONL file (a run folder: its ``metrics.jsonl``).

    Raises:
        PlotError: missing or unreadable file, no records, a record without the
            keys or with a value that is not a number (``metrics.load``).
    """
    path = Path(path)
    try:
        records = metrics.load(path)
    except metrics.LogError as exc:
        raise PlotError(str(exc)) from None
    cols = {k: np.asarray([r[k] for r in records], dtype=np.float64) for k in KEYS}
    steps = np.asarray([r["total_steps"] for r in records], dtype=np.float64)
    if not np.isfinite(cols["reward"]).any():
        raise PlotError(f"{path} has no finite episode reward to plot (all NaN or inf)")
    return Run(
        label=label if label is not None else name_of(path),
        episode=cols["episode"].astype(np.int64),
        reward=cols["reward"],
        running_reward=cols["running_reward"],
        time=cols["time"],
        steps=steps,
    )


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds >= 3 * 3600:
        return 3600.0, "hours"
    if seconds >= 3 * 60:
        return 60.0, "minutes"
    return 1.0, "seconds"


def check_output(output: str | os.PathLike[str], width: int, height: int) -> str:
    """Check the image name, size and directory before any work; return the format.

    Raises:
        MissingExtraError: matplotlib is not installed.
        ConfigError: a ``--size`` side out of range.
        PlotError: no suffix, one matplotlib cannot write, or an unwritable path.
    """
    check_number("--size width", width, MIN_SIZE[0], MAX_SIDE)
    check_number("--size height", height, MIN_SIZE[1], MAX_SIDE)
    require("matplotlib", "plot", "plotting")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    output = Path(output)
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in supported:
        named = f"ends in {output.suffix!r}" if output.suffix else "has no suffix"
        raise PlotError(
            f"plot file {output} {named}; end it in .png, .svg, .pdf or another of: "
            + ", ".join(sorted(supported))
        )
    check_writable(output, "plot", PlotError)
    return fmt


def plot(
    runs: Sequence[Run],
    output: str | os.PathLike[str],
    width: int = 1200,
    height: int = 450,
    dpi: int = 100,
    title: str | None = None,
    x: Sequence[str] = DEFAULT_X,
) -> Path:
    """Draw ``runs`` into an image of ``width`` x ``height`` pixels (at ``dpi``
    for vector formats), in the format of ``output``'s suffix, one panel for
    each of ``x`` (keys of ``X_AXES``), sharing the reward axis.

    Raises:
        MissingExtraError: matplotlib is not installed (names the ``plot`` extra).
        ConfigError, PlotError: no runs, a bad size, name or x axis, or the file
            cannot be written.
    """
    if not runs:
        raise PlotError("no metrics files to plot")
    fmt = check_output(output, width, height)
    check_x(x)
    if "steps" in x:
        for run in runs:
            if not np.isfinite(run.steps).all():
                raise PlotError(f"{run.label} has no total_steps to plot against; drop --x steps")
    # The object API with an Agg canvas: no pyplot, no GUI backend, no global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(x), sharey=True))
    scale, unit = _time_unit(max(float(r.time[-1]) for r in runs))
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        columns = {"episode": run.episode, "steps": run.steps / 1e6, "time": run.time / scale}
        for ax, key in zip(axes, x, strict=True):
            ax.plot(columns[key], run.reward, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(columns[key], run.running_reward, color=color, linewidth=2.0, label=run.label)
    units = {"steps": " (millions)", "time": f" ({unit})"}
    for ax, key in zip(axes, x, strict=True):
        ax.set_xlabel(X_AXES[key] + units.get(key, ""))
        if key == "episode":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("reward (points won - points lost)")
    # Running reward 0 = as good as the built-in opponent. Drawn only when the
    # curves come near it: forcing it into view would flatten an early run's curve.
    near_even = max(float(r.reward.max()) for r in runs) >= -5
    for ax in axes:
        if near_even:
            ax.axhline(0.0, color="0.5", linewidth=0.8, linestyle="--")
        ax.grid(True, alpha=0.3)
    # Beside the axes, not on them: a short run's curves fill the whole plot.
    fig.legend(
        *axes[0].get_legend_handles_labels(),
        loc="outside lower center",
        ncols=min(len(runs), 4),
        title="running reward (thin: episode reward)",
        fontsize="small",
        title_fontsize="small",
    )
    if title:
        fig.suptitle(title)
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output, dpi=dpi, format=fmt)
    except OSError as exc:
        raise PlotError(f"cannot write {output}: {exc.strerror or exc}") from None
    return output


def check_x(x: Sequence[str]) -> None:
    """Raise ConfigError unless ``x`` names 1 to 3 distinct panels of ``X_AXES``."""
    bad = [k for k in x if k not in X_AXES]
    if bad or not 1 <= len(x) <= len(X_AXES) or len(set(x)) != len(x):
        raise ConfigError(
            f"--x takes 1 to 3 different axes of {', '.join(X_AXES)}, got {' '.join(x) or 'none'}"
        )


def plot_files(
    paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    labels: Sequence[str] | None = None,
    **options: object,
) -> Path:
    """Read metrics files and plot them; ``labels`` default to the file names.

    Raises:
        ConfigError, PlotError, MissingExtraError.
    """
    if labels and len(labels) != len(paths):
        raise PlotError(f"got {len(labels)} --label for {len(paths)} metrics files")
    # Before reading possibly large logs.
    width, height = options.get("width", 1200), options.get("height", 450)
    check_output(output, width, height)  # type: ignore[arg-type]
    check_x(options.get("x", DEFAULT_X))  # type: ignore[arg-type]
    runs = [load_run(p, labels[i] if labels else None) for i, p in enumerate(paths)]
    return plot(runs, output, **options)  # type: ignore[arg-type]
