"""Which files a run writes, and the checks that keep other runs' files safe.

A fresh run writes ``--checkpoint`` and ``--metrics`` (``runs/pong.*`` unless
given) and, with ``--tensorboard DIR``, event files in DIR; it refuses to
replace existing ones without ``--overwrite``.

A resume continues the run it was given. Unless told otherwise it writes
that run's own checkpoint (the ``--resume`` file, or the file a ``--keep``
copy was kept from), appends to the log that run wrote, whose place the
checkpoint records, and writes into that run's TensorBoard directory. Any
other existing checkpoint is another run's, and the log must agree with the
checkpoint up to its episode (episodes 1..N in order, the same step count and
running reward at N), so a resumed curve never has a gap or another run's
episodes in it. A copy of the run (a new ``--checkpoint``) needs a log and a
TensorBoard directory of its own, which start with the original's episodes.
Event files are changed only where ``event_files`` shows they are pongxp's and
of the resumed run; an event file pongxp did not write is never changed.
``--overwrite`` on a resume is the one way past these checks: it lets the
resume replace another run's checkpoint, log or event files, or start a new
log when the run's own is lost or does not match.

Everything here runs before any work, so a refusal touches no file.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pongxp import event_files, metrics
from pongxp.checkpoint import Checkpoint, looks_like_checkpoint
from pongxp.config import (
    CHECKPOINT_SUFFIX,
    DEFAULT_CHECKPOINT,
    DEFAULT_METRICS,
    ConfigError,
    TrainConfig,
    check_suffix,
)

# A --keep copy: <stem>.ep<episode>.npz beside the checkpoint it was kept from.
_KEPT_COPY = re.compile(r"(?P<stem>.+)\.ep\d+(?P<suffix>\.npz)")
_OTHER_BOARD = "another --tensorboard directory"


@dataclass
class RunFiles:
    """What ``plan`` decided: the settings with both paths filled in, the log
    records to keep, notes for the user, and what to do in the TensorBoard
    directory (None: none)."""

    cfg: TrainConfig
    log_records: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    events: event_files.Plan | None = None


def own_checkpoint(resume: str, ckpt: Checkpoint) -> str:
    """The checkpoint path of the run saved in ``resume``: ``resume`` itself,
    or, for a ``--keep`` copy ``X.ep00000100.npz``, the ``X.npz`` beside it."""
    head, name = os.path.split(resume)
    kept = _KEPT_COPY.fullmatch(name)
    saved_name = os.path.basename(ckpt.config.checkpoint or "")
    if kept and saved_name == kept["stem"] + kept["suffix"]:
        return os.path.join(head, saved_name)
    return resume


def own_log(resume: str, ckpt: Checkpoint) -> str:
    """The metrics log of the run saved in ``resume``.

    Checkpoints record it relative to their own directory, so a run moved or
    resumed from another working directory still finds it; older ones hold
    the path as it was given, relative to the directory training ran in.
    """
    if ckpt.metrics_log is not None:
        return os.path.normpath(os.path.join(os.path.dirname(resume), ckpt.metrics_log))
    return ckpt.config.metrics or DEFAULT_METRICS


def log_location(checkpoint_path: str, metrics_path: str) -> str:
    """``metrics_path`` relative to the checkpoint's directory, as checkpoints record it."""
    base = os.path.dirname(os.path.abspath(checkpoint_path))
    return os.path.relpath(os.path.abspath(metrics_path), base)


def resume_command(cfg: TrainConfig, command: str) -> str:
    """The command line that continues the run ``cfg`` is writing.

    Algorithm settings, the episode target and the log's place come back
    from the checkpoint; where the run ran (device, actors) does not, so
    those flags are repeated when they differ from the defaults.
    """
    parts = [command, "--resume", shlex.quote(str(cfg.checkpoint))]
    defaults = TrainConfig()
    for flag, name in (
        ("--device", "device"),
        ("--num-envs", "num_envs"),
        ("--actors", "actors"),
        ("--ray-address", "ray_address"),
    ):
        value = getattr(cfg, name)
        if value != getattr(defaults, name):
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def plan(cfg: TrainConfig, resumed: Checkpoint | None) -> RunFiles:
    """Fill in the run's checkpoint and log paths and check that writing them
    loses nothing.

    Raises:
        ConfigError: one line saying what would be lost and what to do.
    """
    return _plan_fresh(cfg) if resumed is None else _plan_resume(cfg, resumed)


def _plan_fresh(cfg: TrainConfig) -> RunFiles:
    cfg = replace(
        cfg,
        checkpoint=cfg.checkpoint or DEFAULT_CHECKPOINT,
        metrics=cfg.metrics or DEFAULT_METRICS,
    )
    ckpt, log = str(cfg.checkpoint), str(cfg.metrics)
    # (Not in TrainConfig.validate: settings stored by older versions must still load.)
    check_suffix(ckpt, CHECKPOINT_SUFFIX, "--checkpoint")
    events = None
    if cfg.tensorboard:
        events = event_files.plan_new(cfg.tensorboard, ckpt, cfg.overwrite, _OTHER_BOARD)
    if cfg.overwrite:
        return RunFiles(cfg, events=events)
    if os.path.isfile(ckpt):  # a directory is refused by check_writable, in its own words
        if looks_like_checkpoint(ckpt):
            raise ConfigError(
                f"{ckpt} already exists; continue that run with --resume {shlex.quote(ckpt)}, "
                "or add --overwrite to start a new run over it"
            )
        raise ConfigError(
            f"{ckpt} already exists and is not a pongxp checkpoint; choose another --checkpoint"
        )
    if os.path.isfile(log) and os.path.getsize(log) > 0:
        # Without its checkpoint the log is of another run (another --checkpoint)
        # or of one killed before its first save; only the user knows which.
        raise ConfigError(
            f"metrics log {log} already exists but {ckpt} does not "
            "(a run killed before its first save, or another run's log); choose another "
            "--metrics, or add --overwrite to start a new run over it"
        )
    return RunFiles(cfg, events=events)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def _plan_resume(cfg: TrainConfig, resumed: Checkpoint) -> RunFiles:
    resume = str(cfg.resume)
    done = resumed.episode
    if cfg.episodes <= done:
        raise ConfigError(
            f"the run in {resume} already has {done} episodes; give --episodes above {done} "
            "to continue it"
        )
    mine, my_log = own_checkpoint(resume, resumed), own_log(resume, resumed)
    ckpt = cfg.checkpoint or mine
    log = cfg.metrics or my_log
    check_suffix(ckpt, CHECKPOINT_SUFFIX, "--checkpoint")
    notes: list[str] = []
    overwritten: list[str] = []
    is_mine = _same_file(ckpt, mine) or _same_file(ckpt, resume)
    if not is_mine:
        if os.path.exists(ckpt):
            if not cfg.overwrite:
                raise ConfigError(
                    f"{ckpt} is another run's checkpoint (this resume continues {mine}); "
                    "choose another --checkpoint, or add --overwrite to replace it"
                )
            overwritten.append(f"checkpoint {ckpt}")
        _refuse_sharing(cfg, resumed, ckpt, mine, my_log)
    events, copied, taken = _plan_events(cfg, resumed, ckpt, mine, is_mine)
    if copied:
        notes.append(copied)
    if taken:
        overwritten.append(taken)
    records, problem = _log_up_to(log, resumed)
    if problem is not None and not os.path.exists(log) and not _same_file(log, my_log):
        # A new log for a copy of the run: it starts with the original's episodes.
        mine_records, mine_problem = _log_up_to(my_log, resumed)
        if mine_problem is None:
            records, problem = mine_records, None
            notes.append(f"note: {log} starts with episodes 1-{done} copied from {my_log}")
    if problem is not None:
        if not cfg.overwrite:
            raise ConfigError(
                f"{problem}; give the log of {resume} with --metrics, or add --overwrite "
                f"to start a new log at episode {done + 1}"
            )
        overwritten.append(f"metrics log {log} (a new log starts at episode {done + 1})")
        records = []
    if overwritten:
        notes.append("note: --overwrite: replacing " + " and ".join(overwritten))
    elif cfg.overwrite:
        notes.append(
            "note: --overwrite changes nothing here: on a resume it only lets the run "
            "replace another run's files, or a log that is lost or does not match"
        )
    cfg = replace(cfg, checkpoint=ckpt, metrics=log)
    cfg.validate(check_env=False)  # the filled-in paths, e.g. not the log over the checkpoint
    return RunFiles(cfg, records, notes, events)


def _refuse_sharing(
    cfg: TrainConfig, resumed: Checkpoint, ckpt: str, mine: str, my_log: str
) -> None:
    """Refuse a copy of the run (a new ``--checkpoint``) that would write into the
    original's log or TensorBoard directory, naming every flag it needs at once."""
    if cfg.overwrite:
        return
    wanted, kept = [], []
    if cfg.metrics is None:
        wanted.append(f"its own log with --metrics (e.g. {Path(ckpt).with_suffix('.jsonl')})")
        kept.append(my_log)
    if cfg.tensorboard and _whose(cfg, resumed, mine, ckpt)[1] == "resumed":
        example = Path(cfg.tensorboard).parent / Path(ckpt).stem
        wanted.append(
            f"its own TensorBoard directory with --tensorboard (e.g. {example}) or --no-tensorboard"
        )
        kept.append(cfg.tensorboard)
    if wanted:
        raise ConfigError(
            f"--checkpoint {ckpt} continues {cfg.resume} as a new run; give it "
            f"{' and '.join(wanted)}, so {' and '.join(kept)} "
            f"{'stays' if len(kept) == 1 else 'stay'} {mine}'s"
        )


def _whose(
    cfg: TrainConfig, resumed: Checkpoint, mine: str, ckpt: str
) -> tuple[event_files.Contents, str]:
    """What the run's --tensorboard directory holds, and whose its pongxp files are:
    "none" (there are none), "resumed" (the resumed run's, so they agree with the
    checkpoint up to its step), "retry" (this same command's, stopped before its
    first save: the owner is ``ckpt``, which does not exist) or "other".

    Raises:
        ConfigError: it holds event files pongxp did not write.
    """
    contents = event_files.read(cfg.tensorboard)
    event_files.refuse_foreign(contents, _OTHER_BOARD)
    owner = contents.owner
    own_dir = resumed.config.tensorboard
    if owner is None and own_dir and _same_file(cfg.tensorboard, own_dir):
        owner = mine  # files of an older pongxp, in the directory the run wrote
    if not contents.ours:
        return contents, "none"
    if _of_run(owner, cfg, mine):
        return contents, "resumed"
    if owner is not None and _same_file(owner, ckpt) and not os.path.exists(ckpt):
        return contents, "retry"
    return contents, "other"


def _of_run(owner: str | None, cfg: TrainConfig, mine: str) -> bool:
    """Whether event files owned by ``owner`` are those of the run being resumed."""
    return owner is not None and (_same_file(owner, mine) or _same_file(owner, str(cfg.resume)))


def _plan_events(
    cfg: TrainConfig, resumed: Checkpoint, ckpt: str, mine: str, is_mine: bool
) -> tuple[event_files.Plan | None, str | None, str | None]:
    """What a resume does in its TensorBoard directory: the plan, a note when it
    starts with the original's points, and what ``--overwrite`` replaces there.

    Raises:
        ConfigError: the directory holds another run's event files (without
            --overwrite) or files pongxp did not write.
    """
    if not cfg.tensorboard:
        return None, None, None
    board, start = cfg.tensorboard, resumed.total_steps
    contents, whose = _whose(cfg, resumed, mine, ckpt)
    if whose == "none":  # a new directory: it starts with the run's points so far
        copy = _originals(cfg, resumed, mine)
        copied = None
        if copy:
            copied = (
                f"note: {board} starts with the TensorBoard points up to step {start} "
                f"copied from {resumed.config.tensorboard}"
            )
        return event_files.Plan(Path(board), ckpt, start, copy=copy), copied, None
    if whose != "other":  # this run's curves: cut after its step (a copy needed --overwrite)
        taken = None
        if whose == "resumed" and not is_mine:
            taken = f"TensorBoard event files in {board} (cut after step {start})"
        return event_files.Plan(Path(board), ckpt, start, keep=contents.ours), None, taken
    if not cfg.overwrite:
        of = f" (of {os.path.relpath(contents.owner)})" if contents.owner else ""
        raise ConfigError(
            f"TensorBoard directory {board} holds another run's event files{of}; choose "
            "another --tensorboard directory or --no-tensorboard, or add --overwrite to "
            "replace them"
        )
    plan = event_files.Plan(Path(board), ckpt, start, drop=contents.ours)
    return plan, None, f"TensorBoard event files in {board}"


def _originals(cfg: TrainConfig, resumed: Checkpoint, mine: str) -> tuple[Path, ...]:
    """The resumed run's event files in the directory it wrote, if that is not
    ``cfg.tensorboard`` and they are still its own."""
    own_dir = resumed.config.tensorboard
    if not own_dir or _same_file(own_dir, cfg.tensorboard):
        return ()
    try:
        contents = event_files.read(own_dir)
    except ConfigError:  # its owner file is damaged: copy nothing, change nothing
        return ()
    return contents.ours if _of_run(contents.owner or mine, cfg, mine) else ()


def _log_up_to(log: str, resumed: Checkpoint) -> tuple[list[dict[str, Any]], str | None]:
    """The log's records of episodes 1..N (N = the checkpoint's episode), or
    what is wrong with the log as this run's."""
    done = resumed.episode
    if not os.path.exists(log):
        if done == 0:
            return [], None
        return [], f"metrics log {log} does not exist, but the run has {done} episodes"
    if not os.path.isfile(log):
        return [], f"metrics log {log} is not a regular file"
    try:
        records = [r for r in metrics.read(log) if isinstance(r, dict)]
    except (OSError, UnicodeDecodeError) as exc:
        return [], f"cannot read metrics log {log} ({getattr(exc, 'strerror', None) or exc})"
    kept = [r for r in records if isinstance(r.get("episode"), int) and r["episode"] <= done]
    if done == 0:
        return [], None
    episodes = [r["episode"] for r in kept]
    if not episodes:
        return [], f"metrics log {log} has no record of episodes 1-{done}"
    if episodes != list(range(1, len(episodes) + 1)):
        gap = next(i for i, e in enumerate(episodes) if e != i + 1)
        after = f"after episode {episodes[gap - 1]}" if gap else "at its start"
        return [], f"metrics log {log} is not this run's: {after} comes episode {episodes[gap]}"
    if episodes[-1] != done:
        return [], (
            f"metrics log {log} ends at episode {episodes[-1]}, before the checkpoint's {done}"
        )
    last = kept[-1]
    if last.get("total_steps") != resumed.log_steps or not _close(
        last.get("running_reward"), resumed.running_reward
    ):
        return [], (
            f"metrics log {log} is not this run's: at episode {done} it has "
            f"{last.get('total_steps')} steps in all, the checkpoint {resumed.log_steps}"
            if last.get("total_steps") != resumed.log_steps
            else f"metrics log {log} is not this run's: its running reward at episode {done} "
            f"is {last.get('running_reward')}, the checkpoint's {resumed.running_reward:.6f}"
        )
    return kept, None


def _close(logged: object, saved: float) -> bool:
    # The log rounds the running reward to 6 decimals.
    return isinstance(logged, (int, float)) and abs(float(logged) - saved) <= 1e-5


def check_not_same(output: str, source: str, what: str) -> None:
    """Refuse to write ``output`` over ``source`` (also through a link).

    Raises:
        ConfigError: e.g. exporting an agent file over the checkpoint it is made from.
    """
    if os.path.exists(output) and _same_file(output, source):
        raise ConfigError(
            f"{output} is {source} itself; writing the {what} there would destroy it: "
            "choose another output"
        )
