"""The training loop: play a batch, update on the device, log, checkpoint.

Read top to bottom, one batch per iteration:

1. the host copy of the weights goes to the actors;
2. they play ``batch_size`` episodes on the CPU (each logged as it ends);
3. the batch goes to the device in one transfer, the update runs there, and
   only the new weights come back at the start of the next iteration;
4. at batch boundaries the state is committed; checkpoints are written from
   committed state only, so Ctrl-C or SIGTERM mid-batch saves the last
   boundary and a resume replays the lost episodes exactly.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any

import numpy as np

from pongxp import backend as backend_mod
from pongxp import checkpoint
from pongxp.batch import stack
from pongxp.config import INPUT_SIZE, TrainConfig
from pongxp.metrics import MetricsLog
from pongxp.optim import zeros_like_params
from pongxp.policy import init_params
from pongxp.progress import Progress
from pongxp.update import all_finite, apply_update
from pongxp.workers import ActorPool


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. weights went non-finite); the message says why."""


class Interrupted(KeyboardInterrupt):
    """Raised from the SIGTERM handler so it takes the same path as Ctrl-C."""


@dataclass
class Committed:
    """Training state at a batch boundary: what a checkpoint holds, weights on the device."""

    params: dict[str, Any]
    cache: dict[str, Any]
    episode: int
    running_reward: float
    total_steps: int
    elapsed: float
    actors: list[dict[str, Any]]


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signum}")


def train(cfg: TrainConfig, quiet: bool = False) -> Committed:
    """Run (or resume) training as ``cfg`` says; return the final committed state.

    Raises:
        TrainingError, checkpoint.CheckpointError, backend.DeviceError.
        KeyboardInterrupt after saving, when interrupted.
    """
    cfg.validate()
    backend = backend_mod.select(cfg.device, cfg.dtype)
    xp = backend.xp
    resumed = checkpoint.load(cfg.resume, hidden=cfg.hidden) if cfg.resume else None

    progress = Progress(cfg.episodes, resumed.episode if resumed else 0, quiet)
    say = progress.message
    say(f"pongxp: {cfg.env_id} on {backend_mod.describe(backend)}, num_envs {cfg.num_envs}")

    actors = ActorPool(cfg.env_id, cfg.seed, cfg.num_envs, cfg.dtype)
    try:
        if resumed is None:
            host = init_params(np.random.default_rng(cfg.seed), cfg.hidden, INPUT_SIZE)
            params = {k: backend.asarray(v) for k, v in host.items()}
            state = Committed(params, zeros_like_params(params, xp), 0, 0.0, 0, 0.0, [])
            state.actors = actors.state()
        else:
            actors.restore(resumed.actors)
            state = Committed(
                {k: backend.asarray(v) for k, v in resumed.params.items()},
                {k: backend.asarray(v) for k, v in resumed.cache.items()},
                resumed.episode,
                resumed.running_reward,
                resumed.total_steps,
                resumed.elapsed,
                resumed.actors,
            )
            say(f"resumed from {cfg.resume} at episode {state.episode}")
        metrics = MetricsLog(cfg.metrics, keep_until=state.episode if resumed else None)
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupted)
        try:
            state = _loop(cfg, backend, actors, state, metrics, progress)
        except KeyboardInterrupt:
            _save(cfg, state, backend)
            say(f"interrupted: saved episode {state.episode} to {cfg.checkpoint}")
            raise
        finally:
            signal.signal(signal.SIGTERM, previous_sigterm)
            metrics.close()
        _save(cfg, state, backend)
        say(
            f"done: {state.episode} episodes, running reward {state.running_reward:+.2f}, "
            f"checkpoint {cfg.checkpoint}"
        )
        return state
    finally:
        actors.close()
        progress.close()


def _loop(
    cfg: TrainConfig,
    backend: backend_mod.Backend,
    actors: ActorPool,
    state: Committed,
    metrics: MetricsLog,
    progress: Progress,
) -> Committed:
    xp = backend.xp
    last_saved = state.episode
    while state.episode < cfg.episodes:
        batch_start = time.perf_counter()
        episode, running, steps = state.episode, state.running_reward, state.total_steps
        actors.set_weights(*(backend.to_host(state.params[k]) for k in ("W1", "W2")))

        played = []
        for ep, stats in actors.play(min(cfg.batch_size, cfg.episodes - episode)):
            episode += 1
            steps += stats.steps
            running = stats.reward if episode == 1 else 0.99 * running + 0.01 * stats.reward
            played.append(ep)
            record = {
                "episode": episode,
                "reward": stats.reward,
                "running_reward": round(running, 6),
                "steps": stats.steps,
                "steps_per_s": round(stats.steps / max(stats.seconds, 1e-9), 1),
                "total_steps": steps,
                "time": round(state.elapsed + time.perf_counter() - batch_start, 3),
            }
            metrics.write(record)
            progress.episode(record)

        device_batch = backend.batch_to_device(stack(played), INPUT_SIZE)
        params, cache, grads = apply_update(
            state.params,
            state.cache,
            device_batch,
            cfg.gamma,
            cfg.learning_rate,
            cfg.decay_rate,
            xp,
        )
        if not (all_finite(grads, xp) and all_finite(params, xp)):
            raise TrainingError(
                f"weights or gradients became NaN/inf in the update after episode {episode}; "
                f"the last good checkpoint ({cfg.checkpoint}, episode {last_saved}) is kept; "
                "try a smaller --lr"
            )
        state = Committed(
            params,
            cache,
            episode,
            running,
            steps,
            state.elapsed + time.perf_counter() - batch_start,
            actors.state(),
        )
        if state.episode - last_saved >= cfg.checkpoint_every:
            _save(cfg, state, backend)
            last_saved = state.episode
    return state


def _save(cfg: TrainConfig, state: Committed, backend: backend_mod.Backend) -> None:
    ckpt = checkpoint.Checkpoint(
        params={k: backend.to_host(v) for k, v in state.params.items()},
        cache={k: backend.to_host(v) for k, v in state.cache.items()},
        episode=state.episode,
        running_reward=float(state.running_reward),
        total_steps=state.total_steps,
        elapsed=state.elapsed,
        config=replace(cfg, resume=None),
        actors=state.actors,
    )
    checkpoint.save(cfg.checkpoint, ckpt, keep=cfg.keep)
