"""What the scaling model's costs are on this machine, and training measured here
to check the model against (both batch modes).

Measured here: the CPU update on synthetic batches (``bench_update``), the
weights sent to a worker process, a share's way back to the trainer, a slot's
stream loaded and saved. From committed results: one idle actor's speed
(``results/throughput.json``) and Ray's costs (``results/ray.json``).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import machine
import numpy as np
from scaling_model import (
    Costs,
    RunLog,
    StreamCosts,
    UpdateRow,
    chunks,
    on,
    play,
    step_slots,
    summarise,
)
from scaling_report import check_line

from pongxp.config import INPUT_SIZE, TrainConfig
from pongxp.slot_share import slot_quota


def idle_speeds(results: Path) -> tuple[float, dict[int, float], str]:
    """From ``results/throughput.json`` (an idle machine): steps/s of one rollout
    actor, training steps/s by number of actors, and where they come from."""
    record = json.loads((results / "throughput.json").read_text())
    rows = {r["num_envs"]: r for r in record["throughput"]}
    where = (
        f"results/throughput.json ({record['machine']['cpu']}, {record['machine']['date']}, "
        f"load {record['machine']['load_average_at_start']})"
    )
    training = {n: float(r["training"]["steps_per_s"]) for n, r in rows.items()}
    return float(rows[1]["rollouts"]["steps_per_s"]), training, where


def measure_cpu_update(
    shapes: Sequence[tuple[int, int]], repeats: int, dtype: str
) -> list[UpdateRow]:
    """The CPU update, best of ``repeats`` after one warm-up, for every (pieces,
    steps each) of ``shapes``: synthetic batches shaped like real rollouts
    (``bench_update``), a piece being an episode, or a slot's part of one."""
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


def measure_weights_send(env_id: str, dtype: str, repeats: int) -> float:
    """Seconds to send the weights to one worker process: ``ActorPool.set_weights``
    with 2 workers (a copy through each one's pipe, one after the other), best of
    ``repeats``, halved."""
    from pongxp.policy import init_params
    from pongxp.workers import ActorPool

    host = init_params(np.random.default_rng(0), TrainConfig().hidden, INPUT_SIZE)
    w1, w2 = host["W1"].astype(dtype), host["W2"].astype(dtype)
    pool = ActorPool(env_id, 2, dtype)
    try:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            pool.set_weights(w1, w2)
            times.append(time.perf_counter() - start)
    finally:
        pool.close()
    return min(times) / 2


def _echo(conn: Any) -> None:
    """Send back every message until an empty one."""
    conn.send_bytes(b"ready")
    while message := conn.recv_bytes():
        conn.send_bytes(message)


def measure_episode_return(length: int, repeats: int) -> float:
    """Seconds per step for an episode's way from a worker to the trainer: pickle,
    through a pipe to another process and back, unpickle; best of ``repeats``, halved."""
    import bench_update

    episode = bench_update.synthetic_episode(length, np.random.default_rng(0))
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=_echo, args=(child,), daemon=True)
    proc.start()
    parent.recv_bytes()  # started
    times = []
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            parent.send_bytes(pickle.dumps((0, episode), protocol=pickle.HIGHEST_PROTOCOL))
            pickle.loads(parent.recv_bytes())
            times.append(time.perf_counter() - start)
    finally:
        parent.send_bytes(b"")
        proc.join()
    return min(times) / 2 / length


def measure_actor_speed(env_id: str, dtype: str, games: int) -> float:
    """Steps/s of one actor here, now: the best of ``games`` whole games of an
    untrained agent. Reported beside the idle machine's speed that the model
    uses, to show how far this machine's load was from it."""
    import array_api_compat.numpy as xp

    from pongxp.policy import init_params
    from pongxp.rollout import Actor

    host = init_params(np.random.default_rng(0), TrainConfig().hidden, INPUT_SIZE)
    actor = Actor(env_id, 0, xp, dtype)
    actor.set_weights(host["W1"].astype(dtype), host["W2"].astype(dtype))
    try:
        rates = [stats.steps / stats.seconds for _, stats in (actor.play() for _ in range(games))]
    finally:
        actor.close()
    return max(rates)


def measure_stream(env_id: str, dtype: str, repeats: int) -> StreamCosts:
    """A slot's stream loaded into an actor (``Actor.load_stream``) and saved
    (``Actor.state``), best of ``repeats`` each: between games (after a whole
    game) and with a game paused mid-way (after a 300-step share of an untrained
    agent's game, which ends at a point)."""
    import array_api_compat.numpy as xp

    from pongxp.policy import init_params
    from pongxp.rollout import Actor

    host = init_params(np.random.default_rng(0), TrainConfig().hidden, INPUT_SIZE)
    actor = Actor(env_id, 0, xp, dtype)
    actor.set_weights(host["W1"].astype(dtype), host["W2"].astype(dtype))
    try:
        actor.play()
        between = actor.state()
        actor.play_share(300)
        paused = actor.state()
        assert "episode" in paused and "episode" not in between
        seconds = {}
        for name, stream in (("", between), ("_paused", paused)):
            loads, saves = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                actor.load_stream(stream)
                loads.append(time.perf_counter() - start)
                start = time.perf_counter()
                actor.state()
                saves.append(time.perf_counter() - start)
            seconds[f"load{name}_s"], seconds[f"save{name}_s"] = min(loads), min(saves)
    finally:
        actor.close()
    return StreamCosts(**seconds)


def ray_costs(
    results: Path, step_s: float, stream: StreamCosts, nodes: int
) -> tuple[Costs, dict[str, Any]]:
    """Costs of a Ray cluster of ``nodes`` nodes, from ``results/ray.json``, and
    what they were taken from.

    Per share: Ray's whole cost per episode at one actor (the trainer's time
    per episode with one Ray actor less that with one actor in its own
    process, which moves nothing: median over the file's rounds), plus the
    share's bytes (its bytes per step) over ``bench_ray.LINK_BYTES_PER_S``. Per
    batch and node: the weights' bytes over that link.
    """
    from bench_ray import LINK_BYTES_PER_S

    record = json.loads((results / "ray.json").read_text())
    settings, payloads = record["settings"], record["payloads"]
    (one,) = (r for r in record["results"] if r["num_envs"] == 1)
    episodes = settings["batch_size"] * settings["batches"]
    extra = [
        (p["steps"] / r["steps_per_s"] - p["steps"] / p["steps_per_s"]) / episodes
        for p, r in zip(one["rounds"]["processes"], one["rounds"]["ray"], strict=True)
    ]
    costs = Costs(
        step_s=step_s,
        weights_s=payloads["weights_bytes"] / LINK_BYTES_PER_S,
        return_s_per_step=payloads["bytes_per_step"] / LINK_BYTES_PER_S,
        stream=stream,
        call_s=statistics.median(extra),
        nodes=nodes,
    )
    source = {
        "file": "results/ray.json",
        "measured": record["machine"]["date"],
        "load_note": record.get("load_note", ""),
        "link_bytes_per_s": LINK_BYTES_PER_S,
        "weights_bytes": payloads["weights_bytes"],
        "bytes_per_step": payloads["bytes_per_step"],
        "call_s_by_round": extra,
    }
    return costs, source


def check(
    cores: Sequence[int],
    batches: int,
    env_id: str,
    dtype: str,
    costs: Costs,
    cpu_rows: list[UpdateRow],
    batch: int,
    idle_training: dict[int, float],
) -> list[dict[str, Any]]:
    """Training measured here against the model of the same runs' episodes: with
    each episode's logged time, and at the model's actor speed (that one also
    against ``idle_training``, steps/s measured on an idle machine by number of
    actors, when there is a figure for that number).

    Each run is ``machine.train_run`` (the trainer, CPU, a fresh
    agent). Timed, on the trainer's own clock: from the first batch's last episode
    to the end (the first update, then every later batch, its update included),
    which leaves out start-up and the first batch's seeding of every emulator.
    """

    args = SimpleNamespace(env_id=env_id, batch_size=batch, dtype=dtype)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in cores:
            state = machine.train_run(args, n, 0, batches, Path(tmp))  # type: ignore[arg-type]
            run = RunLog.read(machine.training_paths(Path(tmp), n, 0, batches)[1])
            lengths = run.steps[batch:].astype(np.float64)
            measured = lengths.sum() / (state.elapsed - run.times[batch - 1])
            first_update = on(cpu_rows)(batch, float(run.steps[:batch].sum()))
            row: dict[str, Any] = {
                "cores": n,
                "batch": batch,
                "batches_timed": batches - 1,
                "steps_per_episode": float(lengths.mean()),
                "measured_steps_per_s": measured,
                "actor_steps_per_s_logged": float(
                    lengths.sum() / (lengths / run.rates[batch:]).sum()
                ),
            }
            for key, seconds in (("own_times", lengths / run.rates[batch:]),
                                 ("model_speed", lengths * costs.step_s)):  # fmt: skip
                modelled = summarise(
                    play(chunks(lengths, batch), chunks(seconds, batch), n, costs), n, on(cpu_rows)
                )
                wall = lengths.sum() / modelled["steps_per_s"] + first_update
                modelled["steps_per_s"] = lengths.sum() / wall
                row[f"modelled_{key}"] = modelled
                row[f"error_{key}"] = modelled["steps_per_s"] / measured - 1
            if n in idle_training:
                row["idle_measured_steps_per_s"] = idle_training[n]
                row["error_model_speed_vs_idle"] = (
                    row["modelled_model_speed"]["steps_per_s"] / idle_training[n] - 1
                )
            print(check_line(row, "episodes", "episode") + ")", flush=True)
            rows.append(row)
    return rows


def recording_pool(pools: list[Any]) -> Callable[..., Any]:
    """A stand-in for ``workers.ActorPool`` in the trainer that also keeps what each
    batch played (the trainer logs episodes; the check needs every share), each
    made one appended to ``pools``. Per batch, at its weights' sending: the time
    and the pool's busy and wall seconds so far; per share: its steps, actor
    seconds, and whether its game was paused before and after it."""
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
            played = super().play(streams, quota, limits)
            for (share, after), before in zip(played, streams, strict=True):
                self.shares[-1].append(
                    (share.batch.num_steps, share.seconds, "episode" in before, "episode" in after)
                )
                yield share, after

    return RecordingPool


def check_steps(
    cores: Sequence[int],
    episodes: int,
    batch_steps: int,
    min_slots: int,
    env_id: str,
    dtype: str,
    costs: Costs,
    step_rows: list[UpdateRow],
) -> list[dict[str, Any]]:
    """Training with batches of ``batch_steps`` steps measured here against the model
    of the same runs' shares: with each share's own actor time, and at the
    model's actor speed.

    Each run is the trainer itself (``machine.train_run``: CPU, a fresh
    agent, seed 0, ``step_slots`` slots) until ``episodes`` episodes have ended,
    with the trainer's pool recording every share (``recording_pool``). Timed
    on the trainer's own clock after the first batch (start-up and the first
    batch's seeding of every emulator left out): the run's elapsed time less
    the time from the first batch's weights to the second's.
    """
    from unittest import mock

    from pongxp import trainer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in cores:
            slots = step_slots(n, min_slots)
            args = SimpleNamespace(env_id=env_id, batch_size=slots, dtype=dtype)
            pools: list[Any] = []
            with mock.patch.object(trainer, "ActorPool", recording_pool(pools)):
                state = machine.train_run(  # type: ignore[arg-type]
                    args, n, 0, 0, Path(tmp), batch_steps=batch_steps, episodes=episodes
                )
            (pool,) = pools
            timed = [np.array(b, dtype=np.float64) for b in pool.shares[1:]]
            steps = [b[:, 0] for b in timed]
            paused = [(b[:, 2] > 0, b[:, 3] > 0) for b in timed]
            first_batch_s = pool.starts[1][0] - pool.starts[0][0]
            measured = sum(x.sum() for x in steps) / (state.elapsed - first_batch_s)
            busy = pool.busy_seconds - pool.starts[1][1]
            wall = pool.wall_seconds - pool.starts[1][2]
            row: dict[str, Any] = {
                "cores": n,
                "batch": slots,
                "quota": slot_quota(batch_steps, slots),
                "batches_timed": len(timed),
                "steps_per_batch": float(np.mean([x.sum() for x in steps])),
                "measured_steps_per_s": measured,
                "measured_idle_in_rollouts": 1 - busy / (n * wall),
                "actor_steps_per_s_logged": float(
                    sum(x.sum() for x in steps) / sum(b[:, 1].sum() for b in timed)
                ),
            }
            for key, seconds in (("own_times", [b[:, 1] for b in timed]),
                                 ("model_speed", [x * costs.step_s for x in steps])):  # fmt: skip
                modelled = summarise(play(steps, seconds, n, costs, paused), n, on(step_rows))
                row[f"modelled_{key}"] = modelled
                row[f"error_{key}"] = modelled["steps_per_s"] / measured - 1
            print(check_line(row, "steps", "share") + ")", flush=True)
            rows.append(row)
    return rows
