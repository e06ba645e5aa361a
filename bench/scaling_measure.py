"""The scaling model's costs measured on this machine (the CPU update, the weights
to a worker, a share's way back, a slot's stream), Ray's from ``results/ray.json``,
and training measured here to check the model against, in either batch mode."""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import machine
import numpy as np
from scaling_model import Costs, StreamCosts, UpdateRow, on, play, step_slots, summarise

from pongxp.config import INPUT_SIZE, TrainConfig
from pongxp.slot_share import slot_quota


def idle_speed(results: Path) -> tuple[float, str]:
    """One rollout actor's steps/s on an idle core (``results/throughput.json``), and its source."""
    record = json.loads((results / "throughput.json").read_text())
    (one,) = (r for r in record["throughput"] if r["num_envs"] == 1)
    m = record["machine"]
    return float(one["rollouts"]["steps_per_s"]), f"results/throughput.json ({m['cpu']})"


def measure_cpu_update(
    shapes: Sequence[tuple[int, int]], repeats: int, dtype: str
) -> list[UpdateRow]:
    """The CPU update, best of ``repeats`` after a warm-up, on ``bench_update``'s
    synthetic batches of (pieces, steps each) for every pair of ``shapes``."""
    import bench_update

    from pongxp import backend as backend_mod

    backend = backend_mod.select("cpu", dtype)
    rng = np.random.default_rng(0)
    rows = []
    for episodes, length in shapes:
        batch = [bench_update.synthetic_episode(length, rng) for _ in range(episodes)]
        case = bench_update.UpdateCase(backend, batch)
        seconds = min(bench_update.time_cpu(case.update, repeats, 1, budget_s=30.0))
        rows.append(UpdateRow(episodes, episodes * length, seconds))
        print(f"cpu update: {episodes} x {length} steps: {seconds * 1e3:.0f} ms", flush=True)
    return rows


def _echo(conn: Any) -> None:
    """Send back every message until an empty one."""
    conn.send_bytes(b"ready")
    while message := conn.recv_bytes():
        conn.send_bytes(message)


def _best(call: Callable[[], Any], repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``call``, in seconds."""
    return min(timeit.repeat(call, number=1, repeat=repeats))


def measure_costs(env_id: str, dtype: str, step_s: float) -> Costs:
    """A batch's costs besides the update, at ``step_s`` seconds an actor step: the
    weights to one worker (``ActorPool.set_weights`` with 2 workers, halved; best of
    20); an episode's way back per step (pickled, through a pipe to another process
    and back, unpickled, halved; best of 20); a slot's stream loaded and saved
    (``Actor.load_stream``, ``Actor.state``; best of 30), between games and paused."""
    import array_api_compat.numpy as xp
    import bench_update

    from pongxp.policy import init_params
    from pongxp.rollout import Actor
    from pongxp.workers import ActorPool

    host = init_params(np.random.default_rng(0), TrainConfig().hidden, INPUT_SIZE)
    w1, w2 = host["W1"].astype(dtype), host["W2"].astype(dtype)
    pool = ActorPool(env_id, 2, dtype)
    try:
        weights_s = _best(lambda: pool.set_weights(w1, w2), 20) / 2
    finally:
        pool.close()
    episode = (0, bench_update.synthetic_episode(5000, np.random.default_rng(0)))
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_echo, args=(child,), daemon=True)
    proc.start()
    parent.recv_bytes()
    try:
        back_s = _best(lambda: (parent.send_bytes(pickle.dumps(episode, pickle.HIGHEST_PROTOCOL)),
                                pickle.loads(parent.recv_bytes())), 20) / 2 / 5000  # fmt: skip
    finally:
        parent.send_bytes(b"")
        proc.join()
    actor = Actor(env_id, 0, xp, dtype)
    try:
        actor.set_weights(w1, w2)
        actor.play()
        between = actor.state()
        actor.play_share(300)
        paused = actor.state()
        stream = StreamCosts(*(
            _best(call, 30) for state in (between, paused)
            for call in (lambda s=state: actor.load_stream(s), actor.state)
        ))  # fmt: skip
    finally:
        actor.close()
    return Costs(step_s, weights_s, back_s, stream)


def ray_costs(results: Path, step_s: float, stream: StreamCosts, nodes: int) -> Costs:
    """A Ray cluster of ``nodes`` nodes (``results/ray.json``): per share, Ray's whole
    cost per episode at one actor (median over rounds) plus its bytes over
    ``bench_ray.LINK_BYTES_PER_S``; per batch and node, the weights' bytes."""
    from bench_ray import LINK_BYTES_PER_S

    record = json.loads((results / "ray.json").read_text())
    settings, payloads = record["settings"], record["payloads"]
    (one,) = (r for r in record["results"] if r["num_envs"] == 1)
    episodes = settings["batch_size"] * settings["batches"]
    extra = [
        (p["steps"] / r["steps_per_s"] - p["steps"] / p["steps_per_s"]) / episodes
        for p, r in zip(one["rounds"]["processes"], one["rounds"]["ray"], strict=True)
    ]
    link = LINK_BYTES_PER_S
    return Costs(step_s, payloads["weights_bytes"] / link, payloads["bytes_per_step"] / link,
                 stream, statistics.median(extra), nodes)  # fmt: skip


def recording_pool(pools: list[Any]) -> Callable[..., Any]:
    """``workers.ActorPool`` that also records, appended to ``pools``: per batch, at
    its weights' sending, the time and the busy and wall seconds so far; per share,
    its steps, actor seconds, and whether its game was paused before and after."""
    from pongxp.workers import ActorPool

    class RecordingPool(ActorPool):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.starts: list[tuple[float, float, float]] = []
            self.shares: list[list[tuple[int, float, bool, bool]]] = []
            pools.append(self)

        def set_weights(self, w1: np.ndarray, w2: np.ndarray) -> None:
            self.starts.append((time.perf_counter(), self.busy_seconds, self.wall_seconds))
            self.shares.append([])
            super().set_weights(w1, w2)

        def play(
            self, streams: list[Any], quota: int | None = None, limits: list[int] | None = None
        ) -> Any:
            for (share, after), before in zip(
                super().play(streams, quota, limits), streams, strict=True
            ):
                self.shares[-1].append(
                    (share.batch.num_steps, share.seconds, "episode" in before, "episode" in after)
                )
                yield share, after

    return RecordingPool


def check(cores: Sequence[int], env_id: str, dtype: str, costs: Costs, update_rows: list[UpdateRow],
          min_batch: int, batch_steps: int = 0, batches: int = 12,
          episodes: int = 300) -> list[dict[str, Any]]:  # fmt: skip
    """Training measured here (``machine.train_run``: CPU, a fresh agent, seed 0; with
    ``batch_steps``, until ``episodes`` episodes ended, else ``batches`` batches)
    against the model of the shares it played, every one recorded from the
    trainer's pool: (a) with each share's own actor time, (b) at the model's actor
    speed. Timed on the trainer's clock from the second batch's weights on."""
    from unittest import mock

    from pongxp import trainer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in cores:
            slots = step_slots(n, min_batch) if batch_steps else max(min_batch, n)
            args = SimpleNamespace(env_id=env_id, batch_size=slots, dtype=dtype)
            pools: list[Any] = []
            with mock.patch.object(trainer, "ActorPool", recording_pool(pools)):
                state = machine.train_run(  # type: ignore[arg-type]
                    args, n, 0, 0 if batch_steps else batches, Path(tmp),
                    batch_steps=batch_steps, episodes=episodes if batch_steps else None,
                )  # fmt: skip
            (pool,) = pools
            timed = [np.array(b, dtype=np.float64) for b in pool.shares[1:]]
            steps = [b[:, 0] for b in timed]
            paused = [(b[:, 2] > 0, b[:, 3] > 0) for b in timed]
            measured = sum(x.sum() for x in steps) / (
                state.elapsed - (pool.starts[1][0] - pool.starts[0][0])
            )
            busy = pool.busy_seconds - pool.starts[1][1]
            wall = pool.wall_seconds - pool.starts[1][2]
            row: dict[str, Any] = {
                "mode": "steps" if batch_steps else "episodes",
                "cores": n,
                "batch": slots,
                "quota": slot_quota(batch_steps, slots) if batch_steps else None,
                "batches_timed": len(timed),
                "steps_per_batch": float(np.mean([x.sum() for x in steps])),
                "measured_steps_per_s": measured,
                "measured_idle_in_rollouts": 1 - busy / (n * wall) if wall > 0 else 0.0,
            }
            for key, seconds in (("own_times", [b[:, 1] for b in timed]),
                                 ("model_speed", [x * costs.step_s for x in steps])):  # fmt: skip
                modelled = summarise(play(steps, seconds, n, costs, paused), n, on(update_rows))
                row[f"modelled_{key}"] = modelled
                row[f"error_{key}"] = modelled["steps_per_s"] / measured - 1
            print(
                f"check, {row['mode']}, N={n}: measured {measured:,.0f} steps/s; modelled "
                f"(a) {row['error_own_times']:+.1%}, (b) {row['error_model_speed']:+.1%}",
                flush=True,
            )
            rows.append(row)
    return rows
