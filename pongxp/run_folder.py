"""A run is a folder: every path of a run, its manifest, its lock, and where a run starts.

``runs/<name>/`` holds everything one training run writes, and nothing else
writes there::

    run.json                  the manifest: pongxp version, command, time, settings, parent
    checkpoint.npz            the latest checkpoint
    checkpoints/epNNNNNNNN.npz  the --keep history
    metrics.jsonl             one record per episode
    tb/                       TensorBoard event files (--tensorboard)
    videos/                   --video-every's videos
    .lock                     the pid of the process training there

This module is the only one that builds a path inside a run folder. A new
run gets a folder of its own (``os.mkdir`` is atomic, so two runs started at
once never share one); a resume continues its run in place; a resume from a
kept checkpoint, from another run, or from an old flat ``.npz`` is a fork: a
new folder that starts with the parent's episodes, the parent only read.
Two processes never write one run: the lock is an ``flock`` on ``.lock``,
which the kernel releases when its process dies, so a killed run's lock is
taken over without a check of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pongxp.config import ConfigError, TrainConfig

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not locked
    fcntl = None  # type: ignore[assignment]

RUNS = Path("runs")  # where a new run's folder goes unless --run names one
_OURS = {"run.json", ".lock", "checkpoint.npz", "checkpoints", "metrics.jsonl", "tb", "videos"}


@dataclass(frozen=True)
class Run:
    """The paths of the run in ``folder``."""

    folder: Path

    manifest = property(lambda self: self.folder / "run.json")
    checkpoint = property(lambda self: self.folder / "checkpoint.npz")
    kept_dir = property(lambda self: self.folder / "checkpoints")
    log = property(lambda self: self.folder / "metrics.jsonl")
    board = property(lambda self: self.folder / "tb")
    videos = property(lambda self: self.folder / "videos")
    lock = property(lambda self: self.folder / ".lock")

    def kept(self, episode: int) -> Path:
        """The ``--keep`` copy of the checkpoint at ``episode``."""
        return self.kept_dir / f"ep{episode:08d}.npz"

    def kept_checkpoints(self) -> list[Path]:
        """The ``--keep`` copies, oldest first (their names sort by episode)."""
        if not self.kept_dir.is_dir():
            return []
        return sorted(p for p in self.kept_dir.glob("ep*.npz") if p.name[2:-4].isdigit())


def run_of(path: str | os.PathLike[str]) -> Run | None:
    """The run that ``path`` names: a run folder, or its ``checkpoint.npz``; else None
    (a kept copy, a flat checkpoint of an older pongxp, an agent file)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    run = Run(folder)
    if run.manifest.is_file() and (path.is_dir() or path.name == run.checkpoint.name):
        return run
    return None


def _run_above(path: Path) -> Run | None:
    """The run a kept copy ``runs/X/checkpoints/epN.npz`` belongs to, if it is one."""
    run = Run(path.parent.parent)
    return run if path.parent == run.kept_dir and run.manifest.is_file() else None


def checkpoint_of(path: str | os.PathLike[str]) -> tuple[Path, list[Path]]:
    """The checkpoint file ``path`` stands for (a run folder: its ``checkpoint.npz``)
    and the older kept checkpoints to fall back on when it does not load."""
    run = run_of(path)
    if run is not None:
        return run.checkpoint, run.kept_checkpoints()[::-1]
    path = Path(path)
    above = _run_above(path)
    older = [p for p in above.kept_checkpoints() if p.name < path.name] if above else []
    return path, older[::-1]


def log_of(path: str | os.PathLike[str]) -> Path:
    """The metrics log ``path`` stands for (a run folder: its ``metrics.jsonl``)."""
    run = run_of(path) if Path(path).is_dir() else None
    return run.log if run is not None else Path(path)


def name_of(path: str | os.PathLike[str]) -> str:
    """A short name for what ``path`` holds: a run's folder name, else the file's stem."""
    run = run_of(path)
    return run.folder.name if run is not None else Path(path).stem


@dataclass
class Opened:
    """A run folder this process has locked and writes, and how it starts.

    Attributes:
        records: the log's records a resume or fork starts with (episodes 1..N).
        start: the emulator step a resume or fork continues from; None: a new run.
        board_from: the TensorBoard folder whose points up to ``start`` the
            run's ``tb/`` starts with: its own (a resume cuts its own curves
            after ``start``), the parent's (a fork), or None.
        created: this process made the folder; a failure before the first
            save removes it again, so nothing is left that a rerun trips over.
    """

    run: Run
    records: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    start: int | None = None
    board_from: Path | None = None
    created: bool = False
    lock_fd: int = -1

    def close(self) -> None:
        """Release the lock (the file stays: unlinking it could let two processes hold one)."""
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1


def open_run(cfg: TrainConfig, resumed: Any, command: str, base: str = "pong") -> Opened:
    """Make or take the folder this run writes, lock it, and say how it starts.

    ``resumed`` is the checkpoint of ``cfg.resume`` (None: a new run). Nothing
    outside the returned folder is ever written or changed.

    Raises:
        ConfigError: one line saying what to do (a folder in use, holding a run, ...).
    """
    if resumed is None:
        opened = _take(cfg.run, RUNS, base, command)
        _write_manifest(opened.run, cfg, command, None)
        return _claim(opened)
    source = Path(str(cfg.resume))
    done = resumed.episode
    if cfg.episodes <= done:
        raise ConfigError(
            f"the run in {source} already has {done} episodes; give --episodes above {done} "
            "to continue it"
        )
    own = run_of(source)
    if own is not None and (cfg.run is None or _same(Path(cfg.run), own.folder)):
        opened = Opened(own, lock_fd=lock(own))  # continue in place
        records, problem = _log_up_to(own.log, resumed)
        if problem is not None:
            opened.close()
            raise ConfigError(
                f"{problem}; continue it in a new folder with a new log: "
                f"--resume {shlex.quote(str(source))} --run runs/NEW"
            )
        opened.records, opened.start, opened.board_from = records, resumed.total_steps, own.board
        return _claim(opened)
    parent = own or _run_above(source)
    if parent is not None:  # a fork of a run folder (or of one of its kept checkpoints)
        log, board, under = parent.log, parent.board, parent.folder.parent
        base = f"{parent.folder.name}-from{done}"
    else:  # a flat checkpoint of an older pongxp: its log is where it recorded it
        log = _legacy_log(source, resumed)
        board, under, base = None, source.parent, source.stem
    opened = _take(cfg.run, under, base, command)
    records, problem = _log_up_to(log, resumed)
    if problem is None:
        if records:
            opened.notes.append(f"note: episodes 1-{done} of {log} copied into {opened.run.log}")
    else:
        opened.notes.append(f"note: {problem}; {opened.run.log} starts at episode {done + 1}")
    opened.records, opened.start, opened.board_from = records, resumed.total_steps, board
    parent_record = {"checkpoint": str(source), "episode": done}
    _write_manifest(opened.run, cfg, command, parent_record)
    return _claim(opened)


def _take(requested: str | None, under: Path, base: str, command: str) -> Opened:
    """A new folder (``requested``, or the first free ``under/base[-N]``), locked."""
    if requested is None:
        for n in range(1, 100_000):
            folder = under / (base if n == 1 else f"{base}-{n}")
            with contextlib.suppress(FileExistsError):
                _mkdir(folder)
                return Opened(Run(folder), created=True, lock_fd=lock(Run(folder)))
        raise ConfigError(f"no free run folder name {under / base}-N; give one with --run")
    folder = Path(requested)
    try:
        _mkdir(folder)
        return Opened(Run(folder), created=True, lock_fd=lock(Run(folder)))
    except FileExistsError:
        pass
    if not folder.is_dir():
        raise ConfigError(f"--run {folder} is a file; give a folder for the run") from None
    run = Run(folder)
    holds_run = ConfigError(
        f"{folder} already holds a run; continue it with: {command} --resume "
        f"{shlex.quote(str(folder))}, or choose another --run"
    )
    if run.checkpoint.exists():
        raise holds_run
    _refuse_foreign(run, manifest=False)
    opened = Opened(run, lock_fd=lock(run))  # (a process that held it is done now)
    if run.checkpoint.exists():  # saved meanwhile by the process that held the lock
        opened.close()
        raise holds_run
    try:
        _refuse_foreign(run, manifest=True)
    except ConfigError:
        opened.close()
        raise
    forget(opened)  # a run of this folder stopped before its first save: start it over
    return opened


def _refuse_foreign(run: Run, manifest: bool) -> None:
    """Refuse a folder holding files pongxp did not write (with ``manifest``: or files
    of pongxp's names but no run.json, which a run writes first)."""
    names = set()
    for p in run.folder.iterdir():  # pongxp's temporary files count as the file they make
        name = p.name.removeprefix(".").split(".tmp-")[0].split(".probe-")[0]
        if p.name != run.lock.name and not p.name.startswith(f".{run.lock.name}"):
            names.add(name if name in _OURS else p.name)
    foreign = sorted(names - _OURS)
    if foreign or (manifest and names and not run.manifest.is_file()):
        shown = ", ".join(foreign[:3]) or "files without a run.json"
        raise ConfigError(
            f"{run.folder} holds files pongxp did not write ({shown}); choose another --run "
            "(a new folder, or an empty one)"
        )


def _mkdir(folder: Path) -> None:
    """Make ``folder`` (FileExistsError: it exists) and the folders above it."""
    try:
        if not folder.parent.is_dir():
            folder.parent.mkdir(parents=True)
        folder.mkdir()
    except FileExistsError:
        if not folder.parent.is_dir():  # a file where a folder above it should be
            raise ConfigError(
                f"cannot create run folder {folder}: {folder.parent} is not a folder; "
                "choose another --run"
            ) from None
        raise
    except OSError as exc:
        raise ConfigError(
            f"cannot create run folder {folder}: {exc.strerror or exc}; choose a writable --run"
        ) from None


def lock(run: Run) -> int:
    """Lock ``run`` for this process; return the lock's descriptor (``_claim`` writes
    the pid there).

    Raises:
        ConfigError: another living process holds it.
    """
    try:
        fd = os.open(run.lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot lock run folder {run.folder}: {exc.strerror or exc}") from None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(
            f"{run.folder} is in use by process {pid}, which is training there; wait for it "
            "to end or stop it (a killed process's lock is taken over)"
        ) from None
    return fd


def _claim(opened: Opened) -> Opened:
    """Write this process's pid into the run's lock, once every check has passed
    (a refused command changes no file)."""
    os.ftruncate(opened.lock_fd, 0)
    os.pwrite(opened.lock_fd, str(os.getpid()).encode(), 0)
    return opened


def forget(opened: Opened) -> None:
    """Remove what a run that has no checkpoint wrote (nothing can resume it), and its
    folder if this process made it; files pongxp did not write stay."""
    run = opened.run
    for path in (run.manifest, run.log):
        path.unlink(missing_ok=True)
    for folder in (run.board, run.videos):
        if folder.is_dir():
            for p in folder.iterdir():
                if "tfevents" in p.name or folder == run.videos:
                    p.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
    if opened.created:
        opened.close()
        run.lock.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            run.folder.rmdir()


def _same(a: Path, b: Path) -> bool:
    return a.exists() and os.path.samefile(a, b)


def _write_manifest(
    run: Run, cfg: TrainConfig, command: str, parent: dict[str, Any] | None
) -> None:
    settings = dataclasses.asdict(cfg)
    for where in ("run", "resume"):
        settings.pop(where, None)
    from pongxp import __version__

    manifest = {
        "pongxp": __version__,
        "command": f"{command} {shlex.join(sys.argv[1:])}",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": settings,
        "parent": parent,
    }
    write_atomically(run.manifest, (json.dumps(manifest, indent=1) + "\n").encode())


def write_atomically(path: Path, data: bytes, temp: str = "") -> None:
    """Write ``path`` under a temporary name (``temp`` or its own), renamed into place:
    a kill leaves it whole."""
    tmp = path.with_name(f".{temp or path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def keep_history(run: Run, episode: int, keep: int) -> None:
    """After a save: with ``keep`` > 1, keep the checkpoint as ``checkpoints/epN.npz``;
    then delete all but the newest ``keep`` copies (keep 1: every one).

    Raises:
        OSError: the copy cannot be made or an old one removed.
    """
    if keep > 1:
        copy = run.kept(episode)
        copy.parent.mkdir(exist_ok=True)
        copy.unlink(missing_ok=True)
        try:
            os.link(run.checkpoint, copy)  # the same bytes, no second write
        except OSError:  # a filesystem without hard links (FAT, some network mounts)
            tmp = copy.with_name(f".{copy.name}.tmp-{os.getpid()}")
            shutil.copyfile(run.checkpoint, tmp)
            os.replace(tmp, copy)
    history = run.kept_checkpoints()
    for old in history if keep == 1 else history[:-keep]:
        old.unlink()


def _legacy_log(source: Path, resumed: Any) -> Path:
    """Where a flat checkpoint of an older pongxp recorded its metrics log."""
    if resumed.metrics_log is not None:  # relative to the checkpoint's folder
        return source.parent / resumed.metrics_log
    return source.with_suffix(".jsonl")


def _log_up_to(log: Path, resumed: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The log's records of episodes 1..N (N: the checkpoint's episode), or what is
    wrong with it as that run's log. The log is only read."""
    from pongxp.metrics import read

    done = resumed.episode
    if done == 0:
        return [], None
    if not log.is_file():  # (a FIFO or a device could block or never end)
        return [], f"metrics log {log} is not there or not a regular file"
    try:
        records = [r for r in read(log) if isinstance(r, dict)]
    except (OSError, UnicodeDecodeError) as exc:
        return [], f"cannot read metrics log {log} ({getattr(exc, 'strerror', None) or exc})"
    kept = [r for r in records if isinstance(r.get("episode"), int) and r["episode"] <= done]
    last = kept[-1] if kept else {}
    if [r["episode"] for r in kept] != list(range(1, done + 1)) or not (
        last.get("total_steps") == resumed.log_steps
        and isinstance(last.get("running_reward"), (int, float))
        and abs(last["running_reward"] - resumed.running_reward) <= 1e-5  # rounded to 6
    ):
        return [], f"metrics log {log} does not match the checkpoint's episodes 1-{done}"
    return kept, None


def continue_command(folder: Path, cfg: TrainConfig, command: str) -> str:
    """The command line that continues the run in ``folder``: the settings come back
    from its checkpoint; where it ran (device, actors) is repeated when not the default."""
    parts = [command, "--resume", shlex.quote(str(folder))]
    defaults = TrainConfig()
    for name in ("device", "num_envs", "actors", "ray_address"):
        value = getattr(cfg, name)
        if value != getattr(defaults, name):
            parts += ["--" + name.replace("_", "-"), shlex.quote(str(value))]
    return " ".join(parts)
