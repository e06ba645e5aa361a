"""TensorBoard event files of training runs: written as a run trains, or from a JSONL log.

``train.py --tensorboard DIR`` writes one run's curves into DIR while it trains;
``pongxp tensorboard LOG... DIR`` writes finished runs' logs, one subdirectory
each. ``tensorboard --logdir DIR`` shows them.

Every point's step is the run's emulator steps so far (``total_steps``), as
CleanRL logs its ``global_step``, so runs with other batch sizes or episode
lengths line up. Per episode: reward, running reward, length and the actor's
steps/s; per batch: training steps/s, update time, the actors' idle share, and
the L2 norms of the weights and of the batch's gradient.

The writer is tensorboardX (the ``tensorboard`` extra): it writes the event
format alone, needs only protobuf besides NumPy, and never imports TensorFlow.
The ``tensorboard`` package also has a writer, but it comes with the whole
viewer (a web server, gRPC and a native data server, about 50 MB installed)
and imports TensorFlow when that is installed; a training machine needs none
of it, and the viewer can run wherever the curves are looked at. Points go
through tensorboardX's synchronous ``EventsWriter``, not its ``SummaryWriter``,
whose writer thread a flush does not wait for (a checkpoint could overtake
queued points) and whose failure would leave training blocked on a full queue.

Which event files are whose, and cutting and copying them, is ``event_files``;
which of them a run may change, ``resume.plan``. A resume cuts its own run's
files as it cuts the JSONL log: points past the checkpoint's step are removed,
so every reader sees each step once; the resumed run's new file also starts
with a restart marker (SessionLog START) at the next step, so a TensorBoard
already showing the removed points drops them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pongxp import checkpoint, diagnostics, event_files, metrics
from pongxp.config import ConfigError, TrainConfig
from pongxp.extras import require

if TYPE_CHECKING:
    from pongxp.backend import Backend
    from pongxp.committed import Committed
    from pongxp.workers import Pool

#: Per-episode JSONL record field -> scalar tag.
EPISODE_TAGS = {
    "reward": "episode/reward",
    "running_reward": "episode/running_reward",
    "steps": "episode/length",
    "steps_per_s": "speed/actor_steps_per_s",
}
#: Order of ``weight_and_grad_norms``'s result -> scalar tag.
NORM_TAGS = ("norms/W1", "norms/W2", "norms/grad_W1", "norms/grad_W2")
#: Settings shown in TensorBoard's HParams tab, to compare runs by.
HPARAMS = (
    "hidden",
    "batch_size",
    "batch_steps",
    "learning_rate",
    "entropy_bonus",
    "standardize",
    "gamma",
    "decay_rate",
    "seed",
    "env_id",
)


def weight_and_grad_norms(params: Mapping[str, Any], grads: Mapping[str, Any], xp: Any) -> Any:
    """L2 norms of W1, W2, dW1 and dW2, as one array so the host reads them in one transfer.

    Args:
        params, grads: {"W1": (H, D), "W2": (H,)} float arrays on one device.

    Returns:
        (4,) array in their dtype, on their device: |W1|, |W2|, |dW1|, |dW2|.
    """
    parts = [params["W1"], params["W2"], grads["W1"], grads["W2"]]
    return xp.stack([xp.linalg.vector_norm(a) for a in parts])


def check_directory(directory: str | os.PathLike[str], purpose: str) -> None:
    """Refuse, before any work, a directory that cannot take event files.

    Args:
        purpose: what needs the extra, for its message, e.g. ``"--tensorboard"``.

    Raises:
        MissingExtraError: tensorboardX is not installed.
        ConfigError: not writable.
    """
    require("tensorboardX", "tensorboard", purpose)
    path = Path(directory)
    checkpoint.check_writable(path / "events.probe", "TensorBoard event files", ConfigError)


class TensorBoardLog:
    """One run's event file in a directory; points are written with ``episode``/``batch``.

    Each point is written to the file when it is logged, from this thread:
    nothing is queued that a checkpoint could overtake, and a write that fails
    is reported here. Training goes on without its curves then, as it does
    without a video: the JSONL log remains the run's record.
    """

    def __init__(
        self,
        plan: event_files.Plan,
        settings: TrainConfig | None = None,
        note: str = "",
        say: Callable[[str], None] = print,
    ) -> None:
        """Prepare the plan's directory (``event_files.prepare``) and open a new event
        file there for a run that starts at the plan's ``start`` (None: a new run).

        Args:
            settings: the run's settings, shown as text (and, at the start of
                the curves, in the HParams tab).
            note: a line shown above the settings, e.g. where a log came from.
            say: prints the line saying that writing failed.

        Raises:
            MissingExtraError; ConfigError: the directory cannot be written.
        """
        require("tensorboardX", "tensorboard", "TensorBoard logging")
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.summary import text

        self.directory = plan.directory
        self._say = say
        self._file: Any = None
        self._busy = self._wall = 0.0  # the actors' seconds at the last batch
        try:
            event_files.prepare(plan)
            # The file's own name part, named as the run's before the file exists.
            # (tensorboardX names files by the second: two in one would collide.)
            token = str(time.time_ns())
            event_files.add(self.directory, plan.owner, token)
            self._file = EventsWriter(str(self.directory / "events"), f".{token}")
            start = plan.start
            # After the cut step, so a second resume from the same checkpoint cuts it too.
            step = 0 if start is None else start + 1
            if start is not None:  # a TensorBoard showing the cut points drops them here
                self._file.write_event(
                    Event(step=step, session_log=SessionLog(status=SessionLog.START))
                )
            if settings is not None and not (plan.keep or plan.copy):  # the curves start here
                self._summary(_hparams(settings), step)
            if settings is not None or note:
                self._summary(text("settings", _settings_text(settings, note)), step)
            self._file.flush()
        except OSError as exc:
            raise ConfigError(
                f"cannot write TensorBoard event files in {self.directory}: "
                f"{exc.strerror or exc}; choose a writable directory"
            ) from None

    def episode(self, record: Mapping[str, Any], walltime: float | None = None) -> None:
        """One episode's scalars, from its JSONL record, at its ``total_steps``."""
        values = {tag: record[key] for key, tag in EPISODE_TAGS.items() if key in record}
        self._scalars(int(record["total_steps"]), values, walltime)

    def batch(
        self,
        before: Committed,
        after: Committed,
        grads: Mapping[str, Any],
        update_seconds: float,
        pool: Pool,
        backend: Backend,
        figures: Any = None,
        learning_rate: float | None = None,
    ) -> None:
        """One batch's scalars at its last step, then a flush, so every point up
        to a checkpoint is on disk when that is saved.

        Args:
            before, after: the committed states the batch went from and to.
            grads: the batch's gradient, on the device.
            update_seconds: the update's own time.
            pool: the actors, with their busy and wall seconds so far.
            figures: ``diagnostics.batch_figures`` of the batch (on the device), if any.
            learning_rate: the update's learning rate, if known (it may follow a schedule).
        """
        if self._file is None:
            return
        steps, seconds = after.total_steps - before.total_steps, after.elapsed - before.elapsed
        busy, wall = pool.busy_seconds - self._busy, pool.wall_seconds - self._wall
        self._busy, self._wall = pool.busy_seconds, pool.wall_seconds
        norms = backend.to_host(weight_and_grad_norms(after.params, grads, backend.xp))
        values = {
            "speed/train_steps_per_s": steps / max(seconds, 1e-9),
            "speed/update_seconds": update_seconds,
            "batch/steps": steps,
            **dict(zip(NORM_TAGS, norms.tolist(), strict=True)),
        }
        if figures is not None:
            values.update(zip(diagnostics.TAGS, backend.to_host(figures).tolist(), strict=True))
        if learning_rate is not None:
            values["update/learning_rate"] = learning_rate
        if wall > 0:
            values["speed/actors_idle"] = max(0.0, 1 - busy / (pool.num_actors * wall))
        self._scalars(after.total_steps, values)
        self._guarded(self._file.flush)

    def close(self) -> None:
        if self._file is not None:
            self._guarded(self._file.close)
            self._file = None

    def _scalars(
        self, step: int, values: Mapping[str, float], walltime: float | None = None
    ) -> None:
        # One event for all of them: a third of the file size of one event each.
        from tensorboardX.proto.summary_pb2 import Summary

        summary = Summary(
            value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()]
        )
        self._summary(summary, step, walltime)

    def _summary(self, summary: Any, step: int, walltime: float | None = None) -> None:
        from tensorboardX.proto.event_pb2 import Event

        if self._file is not None:
            event = Event(
                summary=summary, step=step, wall_time=time.time() if walltime is None else walltime
            )
            self._guarded(lambda: self._file.write_event(event))

    def _guarded(self, write: Callable[[], object]) -> None:
        try:
            write()
        except OSError as exc:  # e.g. the disk filled up
            self._file = None
            self._say(
                f"TensorBoard logging stopped: cannot write {self.directory}: "
                f"{exc.strerror or exc}; training goes on (the metrics log has every episode)"
            )


def _hparams(settings: TrainConfig) -> Any:
    """A session-start summary with the settings of ``HPARAMS``; without an
    experiment summary, TensorBoard builds the table's columns from all runs'
    sessions, so runs written apart still compare in one view."""
    from tensorboardX.summary import hparams

    _, session_start, _ = hparams({name: getattr(settings, name) for name in HPARAMS}, {})
    return session_start


def _settings_text(settings: TrainConfig | None, note: str) -> str:
    """Markdown: ``note``, then a table of the settings."""
    lines = [note, ""] if note else []
    if settings is not None:
        lines += ["| setting | value |", "|---|---|"]
        for name, value in dataclasses.asdict(settings).items():
            lines.append(f"| {name} | `{json.dumps(value)}` |")
    return "\n".join(lines)


def open_for_training(
    cfg: TrainConfig, plan: event_files.Plan | None, say: Callable[[str], None]
) -> TensorBoardLog | None:
    """The run's TensorBoard log as ``resume.plan`` planned it, or None when
    ``--tensorboard`` is off.

    Args:
        say: prints a message (the run's progress output).
    """
    if plan is None:
        return None
    note = f"resumed from {cfg.resume}" if cfg.resume else ""
    return TensorBoardLog(plan, cfg, note, say)


def check_training(cfg: TrainConfig) -> None:
    """``check_directory`` for the run's ``--tensorboard``, if it has one."""
    if cfg.tensorboard:
        check_directory(cfg.tensorboard, "--tensorboard")


def discard(cfg: TrainConfig) -> None:
    """Remove a new run's event files when it died before its first checkpoint:
    nothing can resume it, so its curves must not make the rerun ask for --overwrite."""
    if cfg.tensorboard:
        with contextlib.suppress(OSError, ConfigError):
            event_files.remove(cfg.tensorboard, str(cfg.checkpoint))


@dataclasses.dataclass
class Converted:
    """What ``convert_logs`` wrote for one log."""

    directory: Path
    episodes: int
    last_step: int


def convert_logs(
    logs: Sequence[str | os.PathLike[str]], directory: str | os.PathLike[str], overwrite: bool
) -> list[Converted]:
    """Write each JSONL metrics log's episodes as a run in ``directory``/<log name>.

    A log records training time, not the clock, so each point's wall time is
    put at the log file's last change minus the training time still to come:
    TensorBoard's "relative" axis then shows training time.

    Raises:
        MissingExtraError, ConfigError: before anything is written.
    """
    runs = [Path(directory) / Path(log).name.removesuffix(".jsonl") for log in logs]
    if len(set(runs)) < len(runs):
        raise ConfigError(
            "two logs have the same file name; convert them into separate directories"
        )
    # Every log, then every directory, is checked before anything is written.
    records = [metrics.load(log) for log in logs]
    plans = []
    for log, run in zip(logs, runs, strict=True):
        check_directory(run, "pongxp tensorboard")
        plans.append(event_files.plan_new(run, str(log), overwrite, "another DIR"))
    done = []
    for log, plan, run_records in zip(logs, plans, records, strict=True):
        origin = os.path.getmtime(log) - float(run_records[-1]["time"])
        board = TensorBoardLog(plan, note=f"converted from {log}")
        total = 0
        try:
            for record in run_records:  # (metrics.load checked that each has them all)
                total = int(record["total_steps"])
                board.episode(record, origin + record["time"])
        finally:
            board.close()
        done.append(Converted(plan.directory, len(run_records), total))
    return done
