"""TensorBoard event files of training runs: written as a run trains, or from a JSONL log.

``train.py --tensorboard`` writes one run's curves into its folder's ``tb/``
while it trains; ``pongxp tensorboard RUN`` writes a finished run's log there,
``pongxp tensorboard LOG... DIR`` into one subdirectory of DIR each.
``tensorboard --logdir runs`` shows every run side by side.

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

A run's ``tb/`` holds that run's event files only (``run_folder``). A resume
cuts them as it cuts the JSONL log: points past the checkpoint's step are
removed, so every reader sees each step once; a fork starts with a copy of
its parent's points up to that step. The new file also starts with a restart
marker (SessionLog START) at the next step, so a TensorBoard already showing
the removed points drops them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pongxp import checkpoint, diagnostics, metrics, run_folder
from pongxp.config import HPARAMS, ConfigError, TrainConfig
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
        directory: Path,
        start: int | None = None,
        copy_from: Path | None = None,
        settings: TrainConfig | None = None,
        note: str = "",
        say: Callable[[str], None] = print,
    ) -> None:
        """Open a new event file in ``directory`` for a run that continues from
        emulator step ``start`` (None: a new run).

        Args:
            copy_from: with ``start``: ``directory`` itself (a resume: its files
                are cut after ``start``), or a parent run's ``tb/`` (a fork: its
                points up to ``start`` are copied under the same names).
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

        self.directory = directory
        self._say = say
        self._file: Any = None
        self._busy = self._wall = 0.0  # the actors' seconds at the last batch
        history = False
        try:
            directory.mkdir(parents=True, exist_ok=True)
            checkpoint.remove_stale_temps(directory / "pongxp-cut")  # of a killed cut
            if start is not None and copy_from is not None and copy_from.is_dir():
                history = _points_up_to_step(copy_from, directory, start)
            # (tensorboardX names files by the second: two in one would collide.)
            self._file = EventsWriter(str(directory / "events"), f".{time.time_ns()}")
            # After the cut step, so a second resume from the same checkpoint cuts it too.
            step = 0 if start is None else start + 1
            if start is not None:  # a TensorBoard showing the cut points drops them here
                self._file.write_event(
                    Event(step=step, session_log=SessionLog(status=SessionLog.START))
                )
            if settings is not None and not history:  # the curves start here
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


def check_training(cfg: TrainConfig, run: run_folder.Run) -> None:
    """``check_directory`` for the run's ``tb/``, if ``--tensorboard`` is on."""
    if cfg.tensorboard:
        check_directory(run.board, "--tensorboard")


_HEADER = struct.Struct("<QI")  # a TFRecord's length and its masked CRC-32C


def _points_up_to_step(source: Path, target: Path, step: int) -> bool:
    """Write each event file of ``source`` with its points up to ``step`` (a torn
    last record too goes) under its name in ``target``; whether there were any.

    ``source`` is the run's own ``tb/`` (a resume) or its parent's (a fork,
    only read). Each file is replaced whole (a kill leaves it as it was).
    """
    from google.protobuf.message import DecodeError
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    files = sorted(p for p in source.iterdir() if "tfevents" in p.name and p.is_file())
    for file in files:
        data, kept, start = file.read_bytes(), [], 0
        while start + _HEADER.size <= len(data):  # u64 length, u32 CRC, payload, u32 CRC
            length, length_crc = _HEADER.unpack_from(data, start)
            stop = start + _HEADER.size + length + 4
            if masked_crc32c(data[start : start + 8]) != length_crc or stop > len(data):
                break
            try:
                point = Event.FromString(data[start + _HEADER.size : stop - 4]).step
            except DecodeError:  # garbage from here on
                break
            if point <= step:
                kept.append(data[start:stop])
            start = stop
        out = b"".join(kept)
        if out != data or target != source:  # (no "tfevents" in a half-written name)
            run_folder.write_atomically(target / file.name, out, temp="pongxp-cut")
    return bool(files)


@dataclasses.dataclass
class Converted:
    """What ``convert_logs`` wrote for one log."""

    directory: Path
    episodes: int
    last_step: int


def convert_logs(
    sources: Sequence[str | os.PathLike[str]], directory: str | os.PathLike[str] | None
) -> list[Converted]:
    """Write each metrics log's episodes as a run's curves: a run folder's log into
    its ``tb/``, with ``directory`` each log into ``directory``/<its name>.

    A log records training time, not the clock, so each point's wall time is
    put at the log file's last change minus the training time still to come:
    TensorBoard's "relative" axis then shows training time.

    Raises:
        MissingExtraError, ConfigError: before anything is written (also: a
            target already holds event files, or its run is training).
    """
    logs = [run_folder.log_of(source) for source in sources]
    if directory is None:
        runs = [run_folder.run_of(source) for source in sources]
        targets = [run.board for run in runs if run is not None]
        if len(targets) < len(sources):
            raise ConfigError("give run folders, or metrics logs and then a DIR to write into")
    else:
        targets = [Path(directory) / run_folder.name_of(source) for source in sources]
    if len({os.path.abspath(t) for t in targets}) < len(targets):
        raise ConfigError("two logs have the same name; convert them into separate directories")
    # Every log, then every directory, is checked before anything is written.
    records = [metrics.load(log) for log in logs]
    for target in targets:
        check_directory(target, "pongxp tensorboard")
        if target.is_dir() and any("tfevents" in p.name for p in target.iterdir()):
            raise ConfigError(f"{target} already holds TensorBoard event files; choose another DIR")
    done = []
    for source, log, target, run_records in zip(sources, logs, targets, records, strict=True):
        run = run_folder.run_of(source) if directory is None else None
        opened = run_folder.Opened(run, lock_fd=run_folder.lock(run)) if run else None
        origin = os.path.getmtime(log) - float(run_records[-1]["time"])
        board = TensorBoardLog(target, note=f"converted from {log}")
        total = 0
        try:
            for record in run_records:  # (metrics.load checked that each has them all)
                total = int(record["total_steps"])
                board.episode(record, origin + record["time"])
        finally:
            board.close()
            if opened is not None:
                opened.close()
        done.append(Converted(target, len(run_records), total))
    return done
