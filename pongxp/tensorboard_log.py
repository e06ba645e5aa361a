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

A resume cuts the event files as it cuts the JSONL log: points past the
checkpoint's step are removed from the files (each file rewritten under
another name and renamed), so every reader sees each step once. The resumed
run's new file also starts with a restart marker (SessionLog START) at the
next step, so a TensorBoard already showing the removed points drops them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pongxp import checkpoint
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
HPARAMS = ("hidden", "batch_size", "learning_rate", "gamma", "decay_rate", "seed", "env_id")
#: Where a file being cut is written before it is renamed into place; the name
#: holds no "tfevents", so a running TensorBoard never reads it half-written.
_CUT_TEMP = "pongxp-cut"
_HEADER = struct.Struct("<QI")  # a TFRecord's length and its masked CRC-32C


def weight_and_grad_norms(params: Mapping[str, Any], grads: Mapping[str, Any], xp: Any) -> Any:
    """L2 norms of W1, W2, dW1 and dW2, as one array so the host reads them in one transfer.

    Args:
        params, grads: {"W1": (H, D), "W2": (H,)} float arrays on one device.

    Returns:
        (4,) array in their dtype, on their device: |W1|, |W2|, |dW1|, |dW2|.
    """
    parts = [params["W1"], params["W2"], grads["W1"], grads["W2"]]
    return xp.stack([xp.linalg.vector_norm(a) for a in parts])


def event_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The event files directly in ``directory`` (not in its subdirectories: other runs)."""
    path = Path(directory)
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if "tfevents" in p.name and p.is_file())


def check_directory(
    directory: str | os.PathLike[str], *, fresh: bool, overwrite: bool, purpose: str, other: str
) -> None:
    """Refuse, before any work, a directory that cannot take a run's event files.

    Args:
        fresh: a new run, not a resume; event files already there are another
            run's curves (or of one killed before its first save), which a new
            run would mix into its own.
        overwrite: a new run may remove them.
        purpose: what needs the extra, for its message, e.g. ``"--tensorboard"``.
        other: what to choose instead, e.g. ``"another --tensorboard directory"``.

    Raises:
        MissingExtraError: tensorboardX is not installed.
        ConfigError: not writable, or holds another run's event files.
    """
    require("tensorboardX", "tensorboard", purpose)
    path = Path(directory)
    checkpoint.check_writable(path / "events.probe", "TensorBoard event files", ConfigError)
    if fresh and not overwrite and event_files(path):
        raise ConfigError(
            f"TensorBoard directory {path} already holds another run's event files; "
            f"choose {other}, or add --overwrite to replace them"
        )


def cut_events(directory: str | os.PathLike[str], keep_through: int | None) -> None:
    """Remove from ``directory``'s event files every point past step ``keep_through``.

    ``None`` removes the files (a new run replacing an old one). A file is
    rewritten only when something goes, under a temporary name renamed into
    place, so a kill leaves it whole, old or new. A torn last record (a run
    killed while writing) goes too.
    """
    from google.protobuf.message import DecodeError
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    path = Path(directory)
    tmp = checkpoint.temp_name(path / _CUT_TEMP, os.getpid())
    checkpoint.remove_stale_temps(path / _CUT_TEMP)
    for file in event_files(path):
        if keep_through is None:
            file.unlink()
            continue
        data = file.read_bytes()
        kept, end, dropped = [], 0, False
        for start, stop in _records(data, masked_crc32c):
            try:
                step = Event.FromString(data[start + _HEADER.size : stop - 4]).step
            except DecodeError:  # garbage from here on
                break
            if step <= keep_through:
                kept.append(data[start:stop])
            else:
                dropped = True
            end = stop
        if end == len(data) and not dropped:
            continue
        try:
            tmp.write_bytes(b"".join(kept))
            os.replace(tmp, file)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _records(data: bytes, crc: Any) -> Iterator[tuple[int, int]]:
    """(start, stop) of each whole TFRecord in ``data``: u64 length, u32 CRC of the
    length, payload, u32 CRC of the payload. Stops at a torn or garbled header."""
    start = 0
    while start + _HEADER.size <= len(data):
        length, length_crc = _HEADER.unpack_from(data, start)
        stop = start + _HEADER.size + length + 4
        if crc(data[start : start + 8]) != length_crc or stop > len(data):
            return
        yield start, stop
        start = stop


class TensorBoardLog:
    """One run's event file in a directory; points are written with ``episode``/``batch``.

    Each point is written to the file when it is logged, from this thread:
    nothing is queued that a checkpoint could overtake, and a write that fails
    is reported here. Training goes on without its curves then, as it does
    without a video: the JSONL log remains the run's record.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        start: int | None,
        settings: TrainConfig | None = None,
        note: str = "",
        say: Callable[[str], None] = print,
    ) -> None:
        """Open ``directory`` for a run that starts at emulator step ``start``.

        Args:
            start: None for a new run (event files already there are removed:
                ``check_directory`` refused them unless allowed); a resume's
                ``total_steps``, after which the files are cut.
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

        self.directory = Path(directory)
        self._say = say
        self._file: Any = None
        self._busy = self._wall = 0.0  # the actors' seconds at the last batch
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            cut_events(self.directory, start)
            first = not event_files(self.directory)  # the curves start here
            # (tensorboardX names files by the second: two in one would collide.)
            self._file = EventsWriter(str(self.directory / "events"), f".{time.time_ns()}")
            # After the cut step, so a second resume from the same checkpoint cuts it too.
            step = 0 if start is None else start + 1
            if start is not None:  # a TensorBoard showing the cut points drops them here
                self._file.write_event(
                    Event(step=step, session_log=SessionLog(status=SessionLog.START))
                )
            if settings is not None and first:
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
    ) -> None:
        """One batch's scalars at its last step, then a flush, so every point up
        to a checkpoint is on disk when that is saved.

        Args:
            before, after: the committed states the batch went from and to.
            grads: the batch's gradient, on the device.
            update_seconds: the update's own time.
            pool: the actors, with their busy and wall seconds so far.
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
            **dict(zip(NORM_TAGS, norms.tolist(), strict=True)),
        }
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
    cfg: TrainConfig, start: int | None, say: Callable[[str], None]
) -> TensorBoardLog | None:
    """The run's TensorBoard log, or None when ``--tensorboard`` is off.

    Args:
        start: None for a new run, else the resumed checkpoint's ``total_steps``.
        say: prints a message (the run's progress output).
    """
    if not cfg.tensorboard:
        return None
    note = f"resumed from {cfg.resume}" if cfg.resume else ""
    return TensorBoardLog(cfg.tensorboard, start, cfg, note, say)


def check_training(cfg: TrainConfig) -> None:
    """``check_directory`` for the run's ``--tensorboard``, if it has one."""
    if cfg.tensorboard:
        check_directory(
            cfg.tensorboard,
            fresh=cfg.resume is None,
            overwrite=cfg.overwrite,
            purpose="--tensorboard",
            other="another --tensorboard directory",
        )


def discard(cfg: TrainConfig) -> None:
    """Remove a new run's event files when it died before its first checkpoint:
    nothing can resume it, so its curves must not make the rerun ask for --overwrite."""
    if cfg.tensorboard:
        with contextlib.suppress(OSError):
            cut_events(cfg.tensorboard, None)


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
    from pongxp import metrics

    runs = [Path(directory) / Path(log).name.removesuffix(".jsonl") for log in logs]
    if len(set(runs)) < len(runs):
        raise ConfigError(
            "two logs have the same file name; convert them into separate directories"
        )
    loaded = []
    for log, run in zip(logs, runs, strict=True):
        check_directory(
            run, fresh=True, overwrite=overwrite, purpose="pongxp tensorboard", other="another DIR"
        )
        try:
            records = metrics.read(log)
        except OSError as exc:
            raise ConfigError(f"cannot read metrics log {log}: {exc.strerror or exc}") from None
        records = [r for r in records if isinstance(r, dict) and "episode" in r]
        if not records:
            raise ConfigError(f"{log} has no episode records; give a log written by training")
        loaded.append((log, run, records))
    done = []
    for log, run, records in loaded:
        origin = os.path.getmtime(log) - float(records[-1].get("time", 0.0))
        board = TensorBoardLog(run, None, note=f"converted from {log}")
        total = 0
        try:
            for record in records:
                # Logs of the first format lack total_steps: the steps add up to it.
                total = int(record.get("total_steps", total + record.get("steps", 0)))
                walltime = origin + record["time"] if "time" in record else None
                board.episode({**record, "total_steps": total}, walltime)
        finally:
            board.close()
        done.append(Converted(run, len(records), total))
    return done
