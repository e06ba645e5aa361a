"""What a training run prints: a progress bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
from typing import Any, TextIO


def episode_line(record: dict[str, Any]) -> str:
    """One episode's line. ``run`` is the whole run's emulator steps/s, all actors
    together, since this process started; ``actor`` is the rate of the actor that
    played this episode alone."""
    return (
        f"episode {record['episode']:>6} | reward {record['reward']:+3d} | "
        f"running {record['running_reward']:+7.2f} | steps {record['steps']:>5} | "
        f"run {record['run_steps_per_s']:>6.0f} steps/s, actor {record['steps_per_s']:>5.0f}"
    )


class Progress:
    """Reports episodes and messages.

    On a terminal: one line per episode scrolling above a tqdm bar (episodes
    done, elapsed time, running reward, the run's steps/s). The bar shows no
    ETA: games get several times longer as the agent improves, so a guess from
    the episodes so far would be far too short. Not a terminal (CI, a log
    file): one plain line per episode. ``quiet``: messages only.
    """

    def __init__(
        self, total: int, start: int = 0, quiet: bool = False, stream: TextIO | None = None
    ) -> None:
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.bar: Any = None
        if not quiet and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=start,
                unit="ep",
                file=self.stream,
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} ep [{elapsed}{postfix}]",
            )

    def episode(self, record: dict[str, Any]) -> None:
        if self.quiet:
            return
        if self.bar is None:
            print(episode_line(record), file=self.stream, flush=True)
            return
        self.bar.write(episode_line(record), file=self.stream)
        self.bar.set_postfix(
            running=f"{record['running_reward']:+.2f}",
            run_steps_s=f"{record['run_steps_per_s']:.0f}",
            refresh=False,
        )
        self.bar.update(1)

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
