"""The training loop: play a batch, update on the device, log, checkpoint.

Read top to bottom, one batch per iteration:

1. the host copy of the weights goes to the actors;
2. they play ``batch_size`` episodes on the CPU, slot j of the batch from
   random stream j (``workers``), so the run does not depend on how many
   actors there are; each episode is logged as it ends;
3. the batch goes to the device in one transfer, the update runs there, and
   only the new weights come back at the start of the next iteration;
4. at batch boundaries the state is committed; checkpoints are written from
   committed state only, so Ctrl-C or SIGTERM mid-batch saves the last
   boundary and a resume replays the lost episodes exactly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pongxp import backend as backend_mod
from pongxp import checkpoint, interrupts, run_folder, tensorboard_log
from pongxp.batch import stack
from pongxp.committed import Committed
from pongxp.config import INPUT_SIZE, RESTORED, TrainConfig, flag
from pongxp.diagnostics import batch_figures
from pongxp.metrics import MetricsLog
from pongxp.optim import init_state
from pongxp.policy import init_params
from pongxp.progress import Progress
from pongxp.slot_share import episode_allowances
from pongxp.update import all_finite, apply_update
from pongxp.workers import ActorPool, Pool, RolloutError, fit_streams, fresh_streams


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. weights went non-finite); the message says why."""


@dataclass
class _Latest:
    """The newest committed state, held outside ``_loop`` so an interrupt saves it.

    (``_loop``'s own variable is gone once it raises; saving the state from
    before the loop would overwrite the last checkpoint with older weights.)
    """

    state: Committed
    run: run_folder.Run
    saved_episode: int | None = None  # the episode this process last saved, if any

    @property
    def saved(self) -> bool:
        """Whether this process has written a checkpoint yet."""
        return self.saved_episode is not None

    def save(self, cfg: TrainConfig, state: Committed, backend: backend_mod.Backend) -> None:
        """Checkpoint ``state`` unless this process has just saved that episode
        (an interval save on the run's last batch, or right before a Ctrl-C)."""
        if self.saved_episode != state.episode:
            _save(cfg, self.run, state, backend)
            self.saved_episode = state.episode


def _kept(cfg: TrainConfig, latest: _Latest, last_saved: int) -> str:
    """Which checkpoint survives a failure, for the error message."""
    if latest.saved:
        return f"the last good checkpoint ({latest.run.checkpoint}, episode {last_saved}) is kept"
    if cfg.resume:
        return f"nothing was saved by this run; {cfg.resume} (episode {last_saved}) is unchanged"
    return "no checkpoint had been written yet"


def train(
    cfg: TrainConfig,
    quiet: bool = False,
    command: str = "python train.py",
    backend: backend_mod.Backend | None = None,
    name: str = "pong",
) -> Committed:
    """Run (or resume) training as ``cfg`` says; return the final committed state.

    SIGINT, SIGTERM and SIGHUP (``interrupts``) stop it at any moment: the
    last batch boundary is saved once training has begun, and one line says
    what was kept.

    Args:
        command: how the user started training, for the line that says how to
            continue the run (e.g. ``"pongxp train"``).
        backend: run the update there instead of on ``cfg.device``'s backend; for
            tests (e.g. array-api-strict on a simulated device). Its dtype must
            be ``cfg.dtype``.
        name: a new run's folder name under runs/ (a counter is added when
            taken), unless ``cfg.run`` names the folder.

    Raises:
        TrainingError, checkpoint.CheckpointError, backend.DeviceError.
        KeyboardInterrupt (``interrupts.Interrupted``) once reported, when interrupted.
    """
    previous = interrupts.install()
    try:
        return _train(cfg, quiet, command, backend, name)
    finally:
        interrupts.restore(previous)


def _train(
    cfg: TrainConfig, quiet: bool, command: str, backend: backend_mod.Backend | None, name: str
) -> Committed:
    cfg.validate()
    # The device first: "already exists" would hide a problem the user must fix anyway.
    if backend is None:
        backend = backend_mod.select(cfg.device, cfg.dtype)
    elif backend.dtype_name != cfg.dtype:
        raise ValueError(f"backend {backend!r} does not compute in cfg.dtype {cfg.dtype}")
    resumed = (
        checkpoint.load(cfg.resume, cfg.hidden, use_older="--resume {}") if cfg.resume else None
    )
    if resumed is not None and resumed.agent:
        raise checkpoint.CheckpointError(
            f"{cfg.resume} is an agent file (weights only, no optimiser or emulator state) "
            "and cannot be resumed; give the training checkpoint it was exported from"
        )
    # The run's folder: new, or the resumed run's own (locked), or a fork's.
    opened = run_folder.open_run(cfg, resumed, command, name)
    try:
        return _train_in(cfg, quiet, command, backend, resumed, opened)
    except BaseException:
        if (resumed is None or opened.created) and not opened.run.checkpoint.exists():
            run_folder.forget(opened)  # nothing can resume it: nothing is left to trip over
        raise
    finally:
        opened.close()


def _train_in(
    cfg: TrainConfig,
    quiet: bool,
    command: str,
    backend: backend_mod.Backend,
    resumed: checkpoint.Checkpoint | None,
    opened: run_folder.Opened,
) -> Committed:
    xp = backend.xp
    run = opened.run
    continue_with = f"continue with: {run_folder.continue_command(run.folder, cfg, command)}"

    progress = Progress(cfg.episodes, resumed.episode if resumed else 0, quiet)
    say = progress.message

    def announce(num_actors: int, note: str) -> None:
        kind = " Ray" if cfg.actors == "ray" else ""
        actors = f"{num_actors}{kind} actor" + ("" if num_actors == 1 else "s")
        say(f"run folder: {run.folder}")
        say(f"pongxp: {cfg.env_id} on {backend_mod.describe(backend)}, {actors}")
        if note:
            say(note)
        for line in [*opened.notes, *_resume_notes(cfg, resumed)]:
            say(line)

    def check_paths() -> None:
        # Fail on an unwritable path now, not at the first save an interval later.
        checkpoint.check_writable(run.checkpoint, "checkpoint")
        checkpoint.check_writable(run.log, "metrics log")
        tensorboard_log.check_training(cfg, run)

    actors: Pool
    if cfg.actors == "ray":  # on a cluster, the number of actors is known once joined
        check_paths()
        actors, note = _open_ray_pool(cfg, say)
        announce(actors.num_actors, note)
    else:
        num_actors, note = cfg.num_actors()
        announce(num_actors, note)
        check_paths()
        actors = ActorPool(cfg.env_id, num_actors, cfg.dtype)
    training = False  # whether the weights are made and batches have begun
    latest: _Latest | None = None
    try:
        if resumed is None:
            host = init_params(np.random.default_rng(cfg.seed), cfg.hidden, INPUT_SIZE)
            (params,) = backend.to_device_all(host)
            streams = fresh_streams(cfg.seed, cfg.batch_size)
            state = Committed(
                params, init_state(cfg.optimizer, params, xp), 0, 0.0, 0, 0.0, streams, 0
            )
        else:
            params, cache, updates = _resumed_state(cfg, resumed, backend)
            state = Committed(
                params,
                cache,
                resumed.episode,
                resumed.running_reward,
                resumed.total_steps,
                resumed.elapsed,
                fit_streams(resumed.streams, cfg.batch_size, cfg.seed, resumed.episode),
                resumed.log_steps,
                updates,
            )
            say(f"resumed from {cfg.resume} at episode {state.episode}")
            dropped = sum("episode" in s for s in resumed.streams[cfg.batch_size :])
            if dropped:
                say(
                    f"note: --batch-size {cfg.batch_size} has fewer slots than the checkpoint's "
                    f"{len(resumed.streams)}: {dropped} episode{'s' if dropped > 1 else ''} "
                    "in progress there will not be finished or logged"
                )
            if not resumed.streams:
                say("note: a format-1 checkpoint: the emulators start new random streams here")
        metrics = MetricsLog(run.log, opened.records)
        board = None
        if cfg.tensorboard:
            note = f"resumed from {cfg.resume}" if cfg.resume else ""
            board = tensorboard_log.TensorBoardLog(
                run.board, opened.start, opened.board_from, cfg, note, say
            )
        latest = _Latest(state, run)
        training = True
        try:
            state = _loop(cfg, backend, actors, latest, metrics, progress, board)
        except RolloutError as exc:  # the actors are lost; what is committed is not
            state = latest.state
            latest.save(cfg, state, backend)
            raise TrainingError(
                f"{exc}; saved episode {state.episode} to {run.checkpoint}; {continue_with}"
            ) from exc
        finally:
            with contextlib.suppress(OSError):  # a full disk must not hide the real error
                metrics.close()
            if board is not None:
                with contextlib.suppress(OSError):
                    board.close()
        latest.save(cfg, state, backend)
        say(
            f"done: {state.episode} episodes, running reward {state.running_reward:+.2f}, "
            f"run folder {run.folder}"
        )
        _report_idle(actors, say, cfg)
        return state
    except KeyboardInterrupt as exc:  # a second signal is ignored meanwhile (interrupts)
        _stop(cfg, resumed, latest, backend, actors, say, continue_with)
        exc.reported = True  # type: ignore[attr-defined]
        raise
    except Exception as exc:
        signum = interrupts.received()
        if signum is not None:  # the signal became another error, e.g. in an import
            _stop(cfg, resumed, latest, backend, actors, say, continue_with)
            raise interrupts.Interrupted(signum, reported=True) from exc
        out_of_memory = backend.out_of_memory(exc, _memory_tips(cfg, training))
        if out_of_memory is None:
            raise
        if training:
            raise backend_mod.DeviceError(
                f"{out_of_memory}; checkpoints already written are kept"
            ) from exc
        raise out_of_memory from exc
    finally:
        actors.close()
        progress.close()


def _stop(
    cfg: TrainConfig,
    resumed: checkpoint.Checkpoint | None,
    latest: _Latest | None,
    backend: backend_mod.Backend,
    actors: Pool,
    say: Callable[[str], None],
    continue_with: str,
) -> None:
    """On an interrupt: save the last batch boundary once training has begun, else
    leave nothing a rerun would trip over; say which in one line."""
    if latest is not None:
        latest.save(cfg, latest.state, backend)
        _report_idle(actors, say, cfg)
        episode, path = latest.state.episode, latest.run.checkpoint
        saved = f"saved episode {episode} to {path}"
        if episode == (resumed.episode if resumed else 0):
            saved = f"no batch had finished; saved the start (episode {episode}) to {path}"
        say(f"interrupted: {saved}; {continue_with}")
        return
    # Before training began: nothing to save (a new run's folder is removed: _train).
    kept = f"{cfg.resume} is unchanged; {continue_with}" if resumed else "nothing was saved"
    say(f"interrupted: before training began; {kept}")


def _resumed_state(
    cfg: TrainConfig, resumed: checkpoint.Checkpoint, backend: backend_mod.Backend
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The weights, the optimizer's state and its updates for a resume, on the
    device. A resume that changes --optimizer starts the new one's state from
    zero (at update 0, so Adam's bias correction starts again): the other's
    state means nothing to it, and _resume_notes says so."""
    if resumed.config.optimizer == cfg.optimizer:
        params, cache = backend.to_device_all(resumed.params, resumed.cache)
        return params, cache, resumed.updates
    (params,) = backend.to_device_all(resumed.params)
    return params, init_state(cfg.optimizer, params, backend.xp), 0


def _resume_notes(cfg: TrainConfig, resumed: checkpoint.Checkpoint | None) -> list[str]:
    """A note for every setting a resume changes, and for a checkpoint whose slots
    do not match its batch size (cut or edited by hand)."""
    if resumed is None:
        return []
    old = resumed.config
    notes = [
        f"note: --{flag(name)} {getattr(cfg, name)} replaces the run's {getattr(old, name)}"
        + (": the batches change kind from here" if name == "batch_steps" else "")
        + (": its state starts from zero here" if name == "optimizer" else "")
        for name in RESTORED
        if name != "episodes" and getattr(cfg, name) != getattr(old, name)
    ]
    if resumed.streams and len(resumed.streams) != old.batch_size:
        notes.append(
            f"note: the checkpoint holds {len(resumed.streams)} slots' games but its batch "
            f"size is {old.batch_size}: slots are cut or started anew to fit --batch-size"
        )
    return notes


def _report_idle(actors: Pool, say: Any, cfg: TrainConfig) -> None:
    """How much of the rollout time the actors waited (for a batch's last share)."""
    if actors.num_actors > 1 and actors.wall_seconds > 0:
        idle = 1 - actors.busy_seconds / (actors.num_actors * actors.wall_seconds)
        last = "share" if cfg.batch_steps else "episode"
        say(f"actors idle {idle:.1%} of the rollout time (a batch waits for its last {last})")


def _memory_tips(cfg: TrainConfig, training: bool) -> list[str]:
    """What would shrink the memory that ran out, for the error message.

    Before the first batch only the weights exist (W1 is H x 6400, with as
    much again for its gradient and for each of the optimizer's moments), so
    only --hidden helps; in an update the batch's activations (steps x H)
    count too, and the flag that sizes the batch is --batch-steps where it is
    set. --dtype float32 is offered only to a float64 run.
    """
    w1 = cfg.hidden * INPUT_SIZE * np.dtype(cfg.dtype).itemsize
    tips = [f"a smaller --hidden (W1 alone is {_size(w1)} at --hidden {cfg.hidden})"]
    if training:
        tips.insert(0, "a smaller --batch-steps" if cfg.batch_steps else "a smaller --batch-size")
    if cfg.dtype != "float32":
        tips.append("--dtype float32")
    return tips


def _size(nbytes: float) -> str:
    """``nbytes`` for people: "4.88 MiB", "200 TiB"."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    step = 0
    while nbytes >= 1024 and step < len(units) - 1:
        nbytes /= 1024
        step += 1
    return f"{nbytes:.3g} {units[step]}"


def _smaller_rate(cfg: TrainConfig, learning_rate: float) -> str:
    """What to lower after weights blew up: ``--lr-end`` where its schedule had
    raised the rate above ``--lr`` (the user's ``--lr`` was not the cause), else ``--lr``."""
    if cfg.lr_end is not None and learning_rate > cfg.learning_rate:
        return (
            f"try a smaller --lr-end (its schedule had raised the rate to {learning_rate:.3g}, "
            f"from --lr {cfg.learning_rate:g})"
        )
    return "try a smaller --lr"


def _open_ray_pool(cfg: TrainConfig, say: Any) -> tuple[Pool, str]:
    """Ray rollout actors as ``cfg`` says, and a note on their number.

    Raises:
        MissingExtraError (no Ray), ConfigError (bad --ray-address),
        TrainingError (the actors did not start).
    """
    from pongxp.extras import require

    require("ray", "ray", "--actors ray")
    from pongxp.ray_pool import open_ray_pool  # Ray stays optional

    try:
        return open_ray_pool(cfg, say)
    except RolloutError as exc:
        raise TrainingError(str(exc)) from exc


def _loop(
    cfg: TrainConfig,
    backend: backend_mod.Backend,
    actors: Pool,
    latest: _Latest,
    metrics: MetricsLog,
    progress: Progress,
    board: tensorboard_log.TensorBoardLog | None = None,
) -> Committed:
    xp = backend.xp
    state = latest.state
    last_saved = state.episode
    recorder = None
    if cfg.video_every:
        from pongxp.video import TrainingRecorder  # imageio only when videos are asked for

        recorder = TrainingRecorder(cfg, latest.run.videos, state.episode, progress.message)
    # The run's rate counts from this process's start (a resume's earlier time
    # was another process's, perhaps on another machine).
    first_steps, first_time = state.total_steps, state.elapsed
    while state.episode < cfg.episodes:
        batch_start = time.perf_counter()
        before = state
        episode, running, steps = state.episode, state.running_reward, state.total_steps
        (weights,) = backend.to_host_all(state.params)  # the batch's one copy down
        actors.set_weights(weights["W1"], weights["W2"])

        played, streams = [], list(state.streams)
        logged_steps = state.logged_steps
        # No batch ends more episodes than the run needs: a batch of episodes plays
        # no more slots, and a batch of steps stops each slot at its last allowed one.
        quota = cfg.quota_at(running, episode)
        limits = episode_allowances(cfg.episodes - episode, cfg.batch_size)
        count = len(limits)
        shares = actors.play(state.streams[:count], quota, limits if quota else None)
        for j, (share, stream) in enumerate(shares):
            streams[j] = stream
            played.append(share.batch)
            # Episodes are logged in slot order, each at the steps played before
            # its end (the slots before it, then its own share up to its end).
            for stats, at in zip(share.ended, share.ended_at, strict=True):
                episode += 1
                logged_steps = steps + at
                running = stats.reward if episode == 1 else 0.99 * running + 0.01 * stats.reward
                now = state.elapsed + time.perf_counter() - batch_start
                record = {
                    "episode": episode,
                    "reward": stats.reward,
                    "running_reward": round(running, 6),
                    "steps": stats.steps,
                    # The actor's rate over the share (= the episode, in whole-episode
                    # batches): an episode a batch of steps carried was played by several.
                    "steps_per_s": round(share.batch.num_steps / max(share.seconds, 1e-9), 1),
                    "total_steps": logged_steps,
                    "time": round(now, 3),
                    "run_steps_per_s": round(
                        (logged_steps - first_steps) / max(now - first_time, 1e-9), 1
                    ),
                }
                try:
                    metrics.write(record)
                except OSError as exc:  # e.g. the disk filled up
                    raise TrainingError(
                        f"cannot write metrics log {latest.run.log}: {exc.strerror or exc}; "
                        f"{_kept(cfg, latest, last_saved)}"
                    ) from exc
                progress.episode(record)
                if board is not None:
                    board.episode(record)
            steps += share.batch.num_steps

        device_batch = backend.batch_to_device(stack(played), INPUT_SIZE)
        backend.sync()  # the upload is done: time the update alone
        update_start = time.perf_counter()
        # Overflow is reported once, clearly, by the finiteness check below, not
        # as NumPy warnings (CuPy does not warn).
        learning_rate = cfg.learning_rate_at(before.running_reward, before.episode)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            params, cache, grads = apply_update(
                state.params,
                state.cache,
                device_batch,
                cfg.gamma,
                learning_rate,
                cfg.decay_rate,
                xp,
                cfg.entropy_bonus,
                cfg.standardize,
                cfg.optimizer,
                state.updates + 1,
                cfg.clip_norm,
            )
        backend.sync()
        update_seconds = time.perf_counter() - update_start
        # The optimizer's state too: g**2 can overflow while g and W stay finite, and a
        # checkpoint holding an inf cache could never be resumed.
        if not all_finite([*grads.values(), *params.values(), *cache.values()], xp):
            raise TrainingError(
                f"weights or gradients became NaN/inf in the update after episode {episode}; "
                f"{_kept(cfg, latest, last_saved)}; {_smaller_rate(cfg, learning_rate)}"
            )
        state = Committed(
            params,
            cache,
            episode,
            running,
            steps,
            state.elapsed + time.perf_counter() - batch_start,
            streams,
            logged_steps,
            state.updates + 1,
        )
        latest.state = state
        if board is not None:  # before the save: the points up to it are then on disk
            figures = batch_figures(before.params, state.params, device_batch, xp)
            board.batch(
                before, state, grads, update_seconds, actors, backend, figures, learning_rate
            )
        if state.episode - last_saved >= cfg.checkpoint_every:
            latest.save(cfg, state, backend)
            last_saved = state.episode
        if recorder is not None:  # after the commit: video time is not training time
            recorder.after_batch(state.episode, state.params, backend.to_host)
    return state


def _save(
    cfg: TrainConfig, run: run_folder.Run, state: Committed, backend: backend_mod.Backend
) -> None:
    params, cache = backend.to_host_all(state.params, state.cache)
    ckpt = checkpoint.Checkpoint(
        params=params,
        cache=cache,
        episode=state.episode,
        running_reward=float(state.running_reward),
        total_steps=state.total_steps,
        elapsed=state.elapsed,
        config=replace(cfg, run=None, resume=None),
        streams=state.streams,
        logged_steps=state.logged_steps,
        updates=state.updates,
    )
    try:
        checkpoint.save(run.checkpoint, ckpt)
        run_folder.keep_history(run, state.episode, cfg.keep)
    except OSError as exc:
        raise TrainingError(
            f"saved {run.checkpoint} but cannot keep its copy in {run.kept_dir}: "
            f"{exc.strerror or exc}"
        ) from exc
    except checkpoint.CheckpointError as exc:
        # A save that fails while training (disk full, say) ends the run: exit 3,
        # as any failure during training; a bad path is found before work (exit 2).
        raise TrainingError(str(exc)) from exc
