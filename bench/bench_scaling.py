"""Where a training run's time goes by core count, with the update on the CPU or on a GPU.

What a batch costs, from measurements:

- **rollouts**: each episode's length, from the committed learning log of the
  `--preset fast` run (``--log``, default ``pretrained/pong-v0.jsonl``: the run that
  brought the running reward to 0), played at the speed of one rollout actor on
  an idle core (``bench/results/throughput.json``, mode ``rollouts``, 1 env:
  its steps/s). The log's own per-episode steps/s are not used as the speed:
  that run shared its two cores with another run for a while. Episodes grow
  from ~1,700 to ~7,000 steps as the agent learns.
- **the update on the CPU**: timed here on synthetic batches of B episodes of
  L steps (``bench_update.UpdateCase``: stack, transfer, forward, returns,
  backward, RMSProp, checks, weights back), the best of ``--repeats`` calls
  after a warm-up, for every batch size modelled and a few L.
- **the weights sent to each worker process** once a batch (``ActorPool.set_weights``,
  2 workers) and **an episode's way back** to the trainer (pickled through a
  pipe): timed here.
- **the update on a GPU**: the GPU rows of ``bench/results/update*.json``
  (``bench_update.py`` run on a CUDA machine: device ``gpu``, sparse CSR, the
  model's dtype). Until such a file is committed the GPU model is "pending";
  once it is, this script models it with no change.

What it models (every such figure is labelled "modelled"), for N cores with N
rollout actors and a batch of B = max(``--min-batch``, N) episodes (the
smallest batch that keeps N actors busy, and never below the default 10):
each batch sends the weights to the N workers, hands its B episodes out in
slot order to whichever actor is free first (as ``workers.ActorPool`` does),
waits for its last episode, then updates. Episode lengths are resampled, per
batch, from the log's episodes around that point of the run (``--window``),
``--resamples`` times; the straggler wait comes from that spread. Derived:
training steps/s, the actors' idle share (during rollouts, as the trainer
reports it, and over all wall time), the update's share of wall time, and the
time to a running reward of 0: the steps the logged run needed (32.3M with the
default log) over the modelled steps/s. That step count was measured with the
logged run's batch (``--log-batch``, 10 for the default log); for other batches
it is an assumption, which ``bench/results/learning.md`` tests up to -10.

The model is checked against training measured here with 1 and 2 actors
(``bench_throughput.run_training``: steps/s over the batches after the first),
predicting each run from its own episodes, once with each episode's logged
time and once with the model's actor speed.

**Batches of steps** (``--batch-steps S``, ``pongxp/slot_share.py``) are modelled
beside them, with the same actor speed, weights' sending, way back (per step)
and update (fitted by steps, timed here on batches shaped like this mode's), on
C slots for N cores: the smallest multiple of N not below ``--min-batch``, so
every actor plays as many shares. Each slot plays its own stream of games; a
share is cut from it by the one rule (``slot_share.share_ends`` at each point's
end, ``slot_quota`` for the quota): at least ceil(S / C) steps, to the end of the
point under way, starting new games within the share, a game still going
carried into the next batch. The games are those of a learning run's log,
drawn around the run's progress as above; each game's points (42 - |reward|
of them, summing to its logged steps) take their shape from real games
recorded at several skill levels (``bench_points.py``, ``--points``), of the
agent whose mean point is nearest the game's. Per share, also: the slot's
stream loaded into the actor and saved after (``workers.play_stream``; a paused
game's restore includes an ALE reset, ``rollout._restore_sticky_action``),
measured here. The steps to the level are the new mode's own when
``--steps-log`` (its learning run) reached it; until then an assumption: as
many as ``--steps-assumed-log`` (the many-cores run of today's mode) needed,
whose games then stand in for the new mode's. The check: short training runs
here with ``--batch-steps S`` at 1 and 2 actors, each share as played (steps,
actor time, paused or not) recorded from the trainer's own pool.

**Ray clusters** (``--ray-clusters KxC``: K nodes of C cores), both modes: the
same schedule on K x C actors, with Ray's costs from ``results/ray.json``: per
share, Ray's whole cost per episode measured there at 1 actor (Ray against
local processes), plus the share's bytes over a 1 Gbit/s link; per batch, the
weights pulled by each of the K nodes over that link, one after the other.

    python bench/bench_scaling.py                 # measure, model, check: bench/results/scaling.*
    python bench/bench_scaling.py --no-check      # no training runs (the model only)
    python bench/bench_scaling.py --steps-log ~/pongxp-sweep/runs/steps34k-s0.jsonl
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import multiprocessing as mp
import pickle
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
import machine

from pongxp.config import INPUT_SIZE, ConfigError, TrainConfig, check_number
from pongxp.slot_share import share_ends, slot_quota

CORES = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_LOG = machine.ROOT / "pretrained" / "pong-v0.jsonl"
#: The devices the update is modelled on, as the tables name them; "none" is an update
#: that takes no time: the most that any GPU could buy.
DEVICES = {"cpu": "CPU", "gpu": "GPU", "none": "none (0 s)"}
GPU_HOWTO = (
    "pending: no GPU rows committed; run `python bench/bench_update.py --name update-gpu` "
    "on a CUDA machine and commit bench/results/update-gpu.json"
)


# -- inputs -------------------------------------------------------------------------
@dataclass(frozen=True)
class RunLog:
    """A training run's per-episode log, (E,) arrays: steps (int64), steps/s, running
    reward, the trainer's elapsed seconds when the episode was logged, the
    episode's reward (int64) and the run's steps by then (int64; with batches of
    steps, games still going in other slots are not in it yet)."""

    steps: np.ndarray
    rates: np.ndarray
    running: np.ndarray
    times: np.ndarray
    rewards: np.ndarray
    total_steps: np.ndarray

    @classmethod
    def read(cls, path: Path) -> RunLog:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        steps = np.array([r["steps"] for r in records], dtype=np.int64)
        totals = [r.get("total_steps") for r in records]
        return cls(
            steps,
            np.array([r["steps_per_s"] for r in records], dtype=np.float64),
            np.array([r["running_reward"] for r in records], dtype=np.float64),
            np.array([r["time"] for r in records], dtype=np.float64),
            np.array([r["reward"] for r in records], dtype=np.int64),
            np.array(totals, dtype=np.int64) if None not in totals else np.cumsum(steps),
        )

    def episodes_to(self, level: float) -> int:
        """Episodes until the running reward first reached ``level``; 0 if never."""
        reached = np.flatnonzero(self.running >= level)
        return int(reached[0]) + 1 if reached.size else 0


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


@dataclass(frozen=True)
class UpdateRow:
    """One timed update: a batch of ``episodes`` episodes, ``steps`` steps in all."""

    episodes: int
    steps: int
    seconds: float


def update_fit(rows: Sequence[UpdateRow], episodes: int) -> tuple[float, float, float]:
    """(a, b, floor): an update of ``episodes`` episodes and T steps takes
    max(a + b * T, floor) seconds.

    An update costs a fixed part (RMSProp over the weights, checks, transfers) and
    a part per step, so a + b * T is fitted by least squares to the rows of the
    episode count nearest ``episodes`` (by ratio; one row: b = 0), which also
    smooths a busy machine's noise, and used beyond those rows too; ``floor`` is
    their fastest time.
    """
    nearest = min(sorted({r.episodes for r in rows}), key=lambda e: abs(np.log(e / episodes)))
    x = np.array([r.steps for r in rows if r.episodes == nearest], dtype=np.float64)
    y = np.array([r.seconds for r in rows if r.episodes == nearest])
    if len(x) == 1:
        return float(y[0]), 0.0, float(y[0])
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope), float(y.min())


def on(rows: Sequence[UpdateRow]) -> Callable[[int, float], float]:
    """``update(episodes, steps)``: an update's seconds, from timed ``rows`` (``update_fit``)."""
    fits: dict[int, tuple[float, float, float]] = {}

    def update(episodes: int, steps: float) -> float:
        if episodes not in fits:
            fits[episodes] = update_fit(rows, episodes)
        a, b, floor = fits[episodes]
        return max(a + b * steps, floor)

    return update


def gpu_rows(results: Path, dtype: str) -> tuple[list[UpdateRow], list[str]]:
    """The GPU update rows committed in ``results/update*.json`` (sparse CSR, ``dtype``),
    and where they came from (file, GPU); none before a GPU run is committed."""
    rows: list[UpdateRow] = []
    sources: list[str] = []
    for path in sorted(results.glob("update*.json")):
        record = json.loads(path.read_text())
        episodes = record.get("synthetic_batch", {}).get("episodes", 10)
        found = [
            UpdateRow(int(r.get("episodes", episodes)), int(r["steps"]), float(r["update_s"]))
            for r in record.get("update", [])
            if r.get("device") == "gpu"
            and r.get("status") == "ok"
            and r.get("frames") == "sparse CSR"
            and r.get("dtype") == dtype
        ]
        if found:
            gpu = record["machine"].get("gpu", {})
            sources.append(f"results/{path.name} ({gpu.get('name', 'GPU')}, {len(found)} rows)")
            rows.extend(found)
    return rows, sources


# -- measured here --------------------------------------------------------------------
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


# -- the model ------------------------------------------------------------------------
def makespan(durations: Sequence[float], actors: int) -> float:
    """Wall time of one batch's rollouts: episodes handed out in slot order, each to
    the actor that frees up first; the batch ends with its last episode."""
    free = [0.0] * min(actors, len(durations))
    for d in durations:
        heapq.heapreplace(free, free[0] + d)
    return max(free)


@dataclass(frozen=True)
class StreamCosts:
    """Seconds to load a slot's stream into an actor before its share and to save
    it after (``workers.play_stream``): between games, or with a game paused
    mid-way by a batch of steps (its restore replays the sticky action after
    an ALE reset; its save packs the game's frames)."""

    load_s: float = 0.0
    save_s: float = 0.0
    load_paused_s: float = 0.0
    save_paused_s: float = 0.0

    def around(self, starts_paused: np.ndarray, ends_paused: np.ndarray) -> np.ndarray:
        """(S,) seconds per share, from (S,) bools: its game was paused before it, after it."""
        load = np.where(starts_paused, self.load_paused_s, self.load_s)
        return load + np.where(ends_paused, self.save_paused_s, self.save_s)


@dataclass(frozen=True)
class Costs:
    """What one batch costs besides its update (seconds)."""

    step_s: float  # one emulator step of one actor, policy included
    weights_s: float  # the weights to one receiver: a worker process, or a Ray node
    return_s_per_step: float  # a share's way back from its worker, per step
    stream: StreamCosts = StreamCosts()
    call_s: float = 0.0  # per share besides its steps' bytes: a Ray call's own cost
    # Ray: the nodes that each pull the weights, one after another; 0: worker
    # processes, one copy through each actor's pipe (none for one actor: it
    # plays in the trainer's process).
    nodes: int = 0

    def weights_out(self, actors: int) -> float:
        """Seconds per batch to get the weights to ``actors`` actors."""
        receivers = self.nodes or (actors if actors > 1 else 0)
        return receivers * self.weights_s

    def way_back(self, actors: int, steps: np.ndarray) -> np.ndarray:
        """(S,) seconds for each of a batch's (S,) shares of ``steps`` to come back."""
        if self.nodes == 0 and actors == 1:
            return np.zeros_like(steps, dtype=np.float64)
        return self.call_s + steps * self.return_s_per_step


@dataclass
class Batches:
    """Batches of a run as the actors play them, one entry per batch: its episodes
    (shares), steps, rollout wall time (straggler wait included), the actors' busy
    time (playing, as the trainer counts it), the time to send the weights, and
    the time actors were held by their shares (busy, and each share's stream
    and way back)."""

    episodes: np.ndarray
    steps: np.ndarray
    rollout_s: np.ndarray
    busy_s: np.ndarray
    weights_s: np.ndarray
    held_s: np.ndarray


def chunks(values: np.ndarray, size: int) -> list[np.ndarray]:
    """``values`` cut into consecutive pieces of ``size`` (the last may be shorter)."""
    return [values[i : i + size] for i in range(0, len(values), size)]


def play(
    lengths: Sequence[np.ndarray],
    busy: Sequence[np.ndarray],
    actors: int,
    costs: Costs,
    paused: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> Batches:
    """The rollout side of batches on ``actors`` actors: per batch, its (S,) shares'
    lengths (steps) and the actor time each takes (seconds); with ``paused``,
    per batch, (S,) bools: each share's game was paused before it, after it
    (batches of steps; whole episodes never are)."""
    rows = []
    for b, (steps, seconds) in enumerate(zip(lengths, busy, strict=True)):
        before, after = paused[b] if paused is not None else (False, False)
        # An actor gets its next slot once its share is back and its stream saved;
        # the trainer counts only the share's own time as busy.
        held = seconds + costs.stream.around(before, after) + costs.way_back(actors, steps)
        rollout = makespan(held, actors)
        weights = costs.weights_out(actors)
        rows.append((len(steps), steps.sum(), rollout, seconds.sum(), weights, held.sum()))
    return Batches(*(np.array(col, dtype=np.float64) for col in zip(*rows, strict=True)))


def summarise(
    played: Batches, actors: int, update: Callable[[int, float], float]
) -> dict[str, float]:
    """Steps/s and shares of wall time of ``played`` with ``update(episodes, steps)`` seconds."""
    updates = np.array(
        [update(int(e), s) for e, s in zip(played.episodes, played.steps, strict=True)]
    )
    wall = played.weights_s + played.rollout_s + updates
    return {
        "steps_per_s": float(played.steps.sum() / wall.sum()),
        "idle_in_rollouts": float(1 - played.busy_s.sum() / (actors * played.rollout_s.sum())),
        # The part of it spent waiting for the batch's last share (episode), no
        # stream or transfer: none with one actor.
        "waiting_in_rollouts": float(1 - played.held_s.sum() / (actors * played.rollout_s.sum())),
        "idle_overall": float(1 - played.busy_s.sum() / (actors * wall.sum())),
        "update_share": float(updates.sum() / wall.sum()),
        "weights_share": float(played.weights_s.sum() / wall.sum()),
        "update_s_mean": float(updates.mean()),
    }


def resampled(steps: np.ndarray, batch: int, window: int, rng: np.random.Generator) -> list:
    """A run's episodes in batches of ``batch``, each batch's lengths drawn (with
    replacement) from the logged episodes within ``window`` of its place in the run."""
    out = []
    for start in range(0, len(steps), batch):
        lo = int(np.clip(start + batch // 2 - window // 2, 0, max(0, len(steps) - window)))
        out.append(rng.choice(steps[lo : lo + window], size=min(batch, len(steps) - start)))
    return out


@dataclass(frozen=True)
class Setup:
    """Where a run is modelled: ``cores`` actors with ``costs``; ``actors`` names
    them in the tables ("processes", or a Ray cluster's shape)."""

    cores: int
    costs: Costs
    actors: str = "processes"


def device_rows(
    head: dict[str, Any],
    runs: Sequence[Batches],
    cores: int,
    updates: dict[str, list[UpdateRow]],
    to_level: float,
    replay: Batches | None = None,
) -> list[dict[str, Any]]:
    """One modelled row per update device: ``head``, then the means over ``runs``
    (one per resampling) and the time to the level, ``to_level`` steps at the
    modelled steps/s, with its 5-95% range over them; the GPU "pending" while
    it has no rows. ``replay``: the logged run itself, in order."""
    rows = []
    for device, device_updates in updates.items():
        row: dict[str, Any] = {**head, "update_on": device}
        rows.append(row)
        if not device_updates:
            row["status"] = GPU_HOWTO
            continue
        each = [summarise(run, cores, on(device_updates)) for run in runs]
        row.update({key: statistics.fmean(r[key] for r in each) for key in each[0]})
        hours = [to_level / r["steps_per_s"] / 3600 for r in each]
        row["hours_to_level"] = to_level / row["steps_per_s"] / 3600
        row["hours_to_level_p5_p95"] = [float(np.percentile(hours, q)) for q in (5, 95)]
        if replay is not None:
            exact = summarise(replay, cores, on(device_updates))
            row["replay"] = {**exact, "hours_to_level": to_level / exact["steps_per_s"] / 3600}
        row["status"] = "ok"
    return rows


def model(
    log: RunLog,
    episodes: int,
    cores: Sequence[int],
    min_batch: int,
    costs: Costs,
    updates: dict[str, list[UpdateRow]],
    resamples: int,
    window: int,
    seed: int,
    clusters: Sequence[Setup] = (),
) -> list[dict[str, Any]]:
    """Modelled rows of whole-episode batches, one per core count (then Ray
    cluster) and update device (see the module doc)."""
    steps = log.steps[:episodes].astype(np.float64)
    to_level = float(steps.sum())
    rng = np.random.default_rng(seed)
    rows = []
    for setup in [Setup(n, costs) for n in cores] + list(clusters):
        n, batch = setup.cores, max(min_batch, setup.cores)
        runs = []
        for _ in range(resamples):
            lengths = resampled(steps, batch, window, rng)
            runs.append(play(lengths, [x * setup.costs.step_s for x in lengths], n, setup.costs))
        lengths = chunks(steps, batch)  # the logged run itself, in order
        replay = play(lengths, [x * setup.costs.step_s for x in lengths], n, setup.costs)
        head = {"mode": "episodes", "actors": setup.actors, "cores": n, "batch": batch}
        rows += device_rows(head, runs, n, updates, to_level, replay)
    return rows


# -- the model of batches of steps ---------------------------------------------------
#: Points in a game of score r: 21 for the winner and the loser's 21 - |r|.
POINTS_PER_GAME = 42


@dataclass(frozen=True)
class PointShapes:
    """Real games' point lengths, each relative to its game's mean point, by agent
    (``bench_points.py``'s record): ``names`` (A,); ``means`` (A,) float64, each
    agent's mean point in steps; ``relative`` A arrays (P_a,) float64."""

    names: tuple[str, ...]
    means: np.ndarray
    relative: tuple[np.ndarray, ...]

    @classmethod
    def read(cls, path: Path) -> PointShapes:
        from bench_points import game_points

        agents = json.loads(path.read_text())["agents"]
        games = [[game_points(g) for g in a["games"]] for a in agents]
        return cls(
            tuple(a["name"] for a in agents),
            np.array([np.concatenate(points).mean() for points in games]),
            tuple(np.concatenate([p / p.mean() for p in points]) for points in games),
        )

    def game(self, steps: int, reward: int, rng: np.random.Generator) -> list[int]:
        """Point lengths (steps) of a game of ``steps`` steps and score ``reward``:
        42 - |reward| points that sum to ``steps``, drawn from the shape of the
        agent whose mean point is nearest (by ratio) this game's."""
        count = POINTS_PER_GAME - abs(reward)
        agent = int(np.argmin(np.abs(np.log(self.means * count / steps))))
        shape = rng.choice(self.relative[agent], size=count)
        # A step each, the rest shared out as the shape says, rounded on the running
        # sum so that the game keeps its logged length.
        ends = np.rint(np.cumsum(shape) * ((steps - count) / shape.sum())).astype(np.int64)
        return (1 + np.diff(ends, prepend=0)).tolist()


def step_slots(cores: int, min_slots: int) -> int:
    """Slots of a batch of steps on ``cores`` actors: the smallest multiple of
    ``cores`` not below ``min_slots``, so that every actor plays as many shares
    (10 slots on 8 actors would keep 6 waiting while 2 play a second share)."""
    return cores * math.ceil(min_slots / cores)


def cut_share(
    stream: deque[int], quota: int | None, next_game: Callable[[], list[int]]
) -> tuple[int, int]:
    """One slot's share of a batch, cut where ``slot_share.share_ends`` ends it:
    its steps and the games that ended in it.

    Args:
        stream: the point lengths (steps) of the slot's game under way, from its
            point under way on (empty: between games); consumed in place, so a
            game still going at the share's end goes on from there next batch.
        quota: ``slot_share.slot_quota``'s steps; None for one whole episode.
        next_game: the point lengths of the slot's next game.
    """
    steps = ended = 0
    while True:
        if not stream:
            stream.extend(next_game())
        steps += stream.popleft()
        over = not stream
        ended += over
        # The rule is asked at each point's last step, the only one with a
        # non-zero reward (its sign is not the rule's business); the other steps
        # have reward 0 and no episode end, where the tests check it never ends.
        if share_ends(steps, quota, 1.0, over):
            return steps, ended


@dataclass
class StepRun:
    """A run's batches of steps as the rule cuts them: per batch, (C,) int64 steps
    of each slot's share and (C,) bools: its game was paused before it, after
    it; and the games that ended in the run."""

    steps: list[np.ndarray]
    paused: list[tuple[np.ndarray, np.ndarray]]
    games: int = 0


def cut_run(
    log: RunLog,
    episodes: int,
    to_level: float,
    slots: int,
    quota: int,
    shapes: PointShapes,
    window: int,
    rng: np.random.Generator,
) -> StepRun:
    """Batches of ``slots`` shares (``cut_share``) until ``to_level`` steps are
    played. Each slot's next game is one of the log's first ``episodes``, drawn
    within ``window`` episodes of the number of games started so far, with its
    points from ``shapes``."""
    streams: list[deque[int]] = [deque() for _ in range(slots)]
    started = 0

    def next_game() -> list[int]:
        nonlocal started
        lo = int(np.clip(started - window // 2, 0, max(0, episodes - window)))
        drawn = int(rng.integers(lo, min(lo + window, episodes)))
        started += 1
        return shapes.game(int(log.steps[drawn]), int(log.rewards[drawn]), rng)

    run = StepRun([], [])
    played = 0
    while played < to_level:
        before = np.array([bool(stream) for stream in streams])
        cut = np.array([cut_share(stream, quota, next_game) for stream in streams])
        run.steps.append(cut[:, 0])
        run.paused.append((before, np.array([bool(stream) for stream in streams])))
        run.games += int(cut[:, 1].sum())
        played += int(cut[:, 0].sum())
    return run


def model_steps(
    log: RunLog,
    episodes: int,
    to_level: float,
    setups: Sequence[Setup],
    min_slots: int,
    batch_steps: int,
    shapes: PointShapes,
    updates: dict[str, list[UpdateRow]],
    resamples: int,
    window: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Modelled rows of batches of ``batch_steps`` steps, one per setup and update
    device (see the module doc); the run's games are ``log``'s first ``episodes``
    and it needs ``to_level`` steps."""
    cuts: dict[int, list[StepRun]] = {}
    rows = []
    for setup in setups:
        slots = step_slots(setup.cores, min_slots)
        quota = slot_quota(batch_steps, slots)
        assert quota is not None
        if slots not in cuts:  # the shares depend on the slots alone, not on the actors
            rng = np.random.default_rng([seed, slots])
            cuts[slots] = [
                cut_run(log, episodes, to_level, slots, quota, shapes, window, rng)
                for _ in range(resamples)
            ]
        runs = [
            play(r.steps, [x * setup.costs.step_s for x in r.steps], setup.cores, setup.costs,
                 r.paused)
            for r in cuts[slots]
        ]  # fmt: skip
        shares = np.concatenate([np.concatenate(r.steps) for r in cuts[slots]])
        spread = [float(np.mean([x.max() - x.mean() for x in r.steps])) for r in cuts[slots]]
        head = {
            "mode": "steps",
            "batch_steps": batch_steps,
            "actors": setup.actors,
            "cores": setup.cores,
            "batch": slots,
            "quota": quota,
            "share_past_quota_mean": float(shares.mean() - quota),
            "share_past_quota_p95": float(np.percentile(shares, 95) - quota),
            "longest_share_past_mean": statistics.fmean(spread),
            "games_to_level": statistics.fmean(r.games for r in cuts[slots]),
        }
        rows += device_rows(head, runs, setup.cores, updates, to_level)
    return rows


# -- the check ------------------------------------------------------------------------
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

    Each run is ``bench_throughput``'s training run (the trainer, CPU, a fresh
    agent). Timed, on the trainer's own clock: from the first batch's last episode
    to the end (the first update, then every later batch, its update included),
    which leaves out start-up and the first batch's seeding of every emulator.
    """
    import bench_throughput

    args = SimpleNamespace(env_id=env_id, batch_size=batch, dtype=dtype)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in cores:
            state = bench_throughput._train(args, n, 0, batches, Path(tmp))  # type: ignore[arg-type]
            run = RunLog.read(bench_throughput.training_paths(Path(tmp), n, 0, batches)[1])
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
            print(_check_line(row, "episodes", "episode") + ")", flush=True)
            rows.append(row)
    return rows


def _recording_pool(pools: list[Any]) -> Callable[..., Any]:
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

    Each run is the trainer itself (``bench_throughput._train``: CPU, a fresh
    agent, seed 0, ``step_slots`` slots) until ``episodes`` episodes have ended,
    with the trainer's pool recording every share (``_recording_pool``). Timed
    on the trainer's own clock after the first batch (start-up and the first
    batch's seeding of every emulator left out): the run's elapsed time less
    the time from the first batch's weights to the second's.
    """
    from unittest import mock

    import bench_throughput

    from pongxp import trainer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in cores:
            slots = step_slots(n, min_slots)
            args = SimpleNamespace(env_id=env_id, batch_size=slots, dtype=dtype)
            pools: list[Any] = []
            with mock.patch.object(trainer, "ActorPool", _recording_pool(pools)):
                state = bench_throughput._train(  # type: ignore[arg-type]
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
            print(_check_line(row, "steps", "share") + ")", flush=True)
            rows.append(row)
    return rows


# -- results --------------------------------------------------------------------------
MODES = {"episodes": "whole episodes", "steps": "batches of steps"}
GOAL_IDLE, GOAL_CORES = 0.05, 16  # issue 25: actors idle <= 5% of the rollouts at 16 cores


def _h(hours: float, *more: float) -> str:
    """``hours`` (and ``more`` in the same unit, as a range) in hours or minutes."""
    scale, unit = (1, "h") if hours >= 1 else (60, "min")
    text = f"{hours * scale:.1f} {unit}"
    if more:
        text += " (" + "-".join(f"{h * scale:.1f}" for h in more) + ")"
    return text


def _pct(share: float) -> str:
    return f"{share:.1%}"


def _batch(row: dict[str, Any]) -> str:
    """What a modelled row's batch is, in words."""
    if row["mode"] == "steps":
        return f"{row['batch']} slots of >= {row['quota']:,} steps"
    return f"batch {row['batch']}"


def _find(record: dict[str, Any], mode: str, cores: int, actors: str, device: str) -> Any:
    """The modelled row of ``mode`` for that setup and update device, or None."""
    rows = record["model_steps" if mode == "steps" else "model"]
    return next(
        (r for r in rows if (r["cores"], r["actors"], r["update_on"]) == (cores, actors, device)),
        None,
    )


def _setups(record: dict[str, Any]) -> list[tuple[int, str]]:
    """(cores, actors) of every modelled setup, in the tables' order."""
    return list(dict.fromkeys((r["cores"], r["actors"]) for r in record["model"]))


def _check_line(row: dict[str, Any], mode: str, times: str) -> str:
    """A check row as a sentence: measured against (a) and (b)."""
    return (
        f"check, {MODES[mode]}, N={row['cores']}: measured {row['measured_steps_per_s']:,.0f} "
        f"training steps/s; modelled {row['modelled_own_times']['steps_per_s']:,.0f} from the "
        f"run's own {times} times ({row['error_own_times']:+.1%}), "
        f"{row['modelled_model_speed']['steps_per_s']:,.0f} at the model's actor speed "
        f"({row['error_model_speed']:+.1%}"
    )


def verdicts(record: dict[str, Any]) -> list[str]:
    level = record["inputs"]["level"]
    out = []
    for row in record["check"]:
        out.append(
            _check_line(row, "episodes", "episode")
            + (
                f"; {row['error_model_speed_vs_idle']:+.1%} against "
                f"{row['idle_measured_steps_per_s']:,.0f} measured on the idle machine)"
                if "idle_measured_steps_per_s" in row
                else ")"
            )
        )
    for row in record["check_steps"]:
        out.append(
            _check_line(row, "steps", "share")
            + f"); actors idle {_pct(row['measured_idle_in_rollouts'])} of the rollouts measured, "
            f"{_pct(row['modelled_own_times']['idle_in_rollouts'])} modelled (a)"
        )
    for cores, actors in _setups(record):
        if actors == "processes" and cores not in (8, 16, 64):
            continue
        parts = []
        for mode in MODES:
            row = _find(record, mode, cores, actors, "cpu")
            parts.append(
                f"{MODES[mode]} ({_batch(row)}): actors idle {_pct(row['idle_in_rollouts'])} "
                f"of the rollouts, {row['steps_per_s']:,.0f} steps/s, running reward {level:g} "
                f"after {_h(row['hours_to_level'])}"
            )
        out.append(f"modelled, {cores} cores ({actors}), CPU update: " + "; ".join(parts))
    goal = _find(record, "steps", GOAL_CORES, "processes", "cpu")
    if goal is not None:
        met = "met" if goal["idle_in_rollouts"] <= GOAL_IDLE else "not met"
        out.append(
            f"goal: batches of steps at {GOAL_CORES} cores (CPU update) keep the actors idle "
            f"<= {GOAL_IDLE:.0%} of the rollouts: modelled {_pct(goal['idle_in_rollouts'])}, "
            f"{met}"
        )
    for row in record["goal_by_batch_steps"]:
        out.append(
            f"modelled, batches of steps at {GOAL_CORES} cores, S = {row['batch_steps']:,} "
            f"({_batch(row)}): actors idle {_pct(row['idle_in_rollouts'])} of the rollouts "
            f"({_pct(row['waiting_in_rollouts'])} waiting for the batch's last share)"
        )
    gpu = _find(record, "steps", GOAL_CORES, "processes", "gpu")
    if gpu is not None and gpu["status"] != "ok":
        out.append(f"GPU update, both modes: {gpu['status']}")
    return out


def _model_table(record: dict[str, Any], mode: str) -> list[str]:
    """The Markdown table of one mode's modelled rows."""
    level = record["inputs"]["level"]
    steps = mode == "steps"
    lines = [
        "| N cores | actors | batch | update on | steps/s (modelled) | actors idle in rollouts "
        "(modelled) | of it, waiting for the last (modelled) | actors idle overall (modelled) | "
        "update share (modelled) | "
        + ("a share past its quota, mean (p95) (modelled) | " if steps else "")
        + f"time to running reward {level:g} (modelled) |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|" + ("---:|" if steps else "") + "---:|",
    ]
    for row in record["model_steps" if steps else "model"]:
        head = f"| {row['cores']} | {row['actors']} | {_batch(row)} | {DEVICES[row['update_on']]} |"
        if row["status"] != "ok":
            lines.append(head + " pending |" * (7 if steps else 6))
            continue
        past = (
            f" {row['share_past_quota_mean']:,.0f} ({row['share_past_quota_p95']:,.0f}) steps |"
            if steps
            else ""
        )
        lo, hi = row["hours_to_level_p5_p95"]
        lines.append(
            f"{head} {row['steps_per_s']:,.0f} | {_pct(row['idle_in_rollouts'])} | "
            f"{_pct(row['waiting_in_rollouts'])} | {_pct(row['idle_overall'])} | "
            f"{_pct(row['update_share'])} |{past} "
            f"{_h(row['hours_to_level'], lo, hi)} |"
        )
    return lines


def _update_table(rows: list[dict[str, Any]], pieces: str) -> list[str]:
    """Timed CPU updates as a Markdown table; ``pieces`` names a batch's parts."""
    lines = [
        f"| B {pieces} | steps | update (ms) | per 10k steps (ms) |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['episodes']} | {r['steps']:,} | {r['seconds'] * 1e3:,.0f} | "
            f"{r['seconds'] / r['steps'] * 1e7:,.0f} |"
        )
    return lines


def _steps_inputs(record: dict[str, Any]) -> list[str]:
    """The batch-of-steps model's own inputs, as Markdown bullets."""
    inputs, settings = record["inputs"], record["settings"]
    steps, stream, level = inputs["batch_steps"], inputs["costs"]["stream"], inputs["level"]
    how = {
        "measured": "measured: that run's own",
        "assumed": "**an assumption**: as many as the whole-episode run of the games above "
        "needed, until a batch-of-steps run reaches the level (`--steps-log`)",
        "given": "given (`--steps-to-level`)",
    }[steps["steps_from"]]
    lines = [
        f"- S = {settings['batch_steps']:,} steps a batch, on C slots for N cores: the smallest "
        f"multiple of N not below {settings['min_batch']} (every actor plays as many shares); "
        "each share at least ceil(S / C) steps, then to the end of the point under way "
        "(`slot_share.share_ends`).",
        f"- Games: `{steps['games']}`, its first {steps['episodes_to_level']:,} episodes (to "
        f"running reward {level:g}), drawn within --window episodes of the run's progress. Steps "
        f"to running reward {level:g}: {steps['steps_to_level'] / 1e6:.1f}M, {how}.",
    ]
    if "steps_log" in steps:
        run = steps["steps_log"]
        reached = steps["steps_from"] == "measured"
        lines.append(
            f"- The batch-of-steps learning run `{run['log']}`: {run['episodes']:,} episodes, "
            f"{run['total_steps'] / 1e6:.1f}M steps logged, running reward "
            f"{run['running_reward']:+.2f} at its end (best {run['best_running_reward']:+.2f})"
            + ("." if reached else f": not yet at {level:g} when this ran.")
        )
    shapes = ", ".join(f"{name} {mean:.0f}" for name, mean in steps["point_shapes"].items())
    lines += [
        f"- Points: `{steps['points']}` (`bench_points.py`: real games, measured), mean point "
        f"by agent: {shapes} steps. Each modelled game has 42 - |reward| points summing to its "
        "logged steps, shaped as the agent's whose mean point is nearest the game's.",
        f"- A slot's stream into its actor and back out, per share, measured here (best of 30): "
        f"between games {stream['load_s'] * 1e3:.2f} ms to load and {stream['save_s'] * 1e3:.2f} "
        f"ms to save; a paused game {stream['load_paused_s'] * 1e3:.2f} ms to load (an ALE "
        f"reset and the sticky action's frames) and {stream['save_paused_s'] * 1e3:.2f} ms to "
        "save. Whole episodes pay the first pair per episode.",
        "- Update on the CPU, measured here as above, on C pieces of L steps (a share is about "
        "the quota to half as much again), fitted by steps per slot count:",
        "",
        *_update_table(steps["cpu_update"], "pieces"),
    ]
    ray = inputs["ray"]
    if ray:
        ray_costs_ms = [s * 1e3 for s in ray["call_s_by_round"]]
        link = ray["link_bytes_per_s"]
        lines += [
            "",
            f"- Ray clusters (both modes), from `{ray['file']}` ({ray['measured']}; "
            f"{ray['load_note']}): per share, Ray's own cost {statistics.median(ray_costs_ms):.1f} "
            "ms (the trainer's time per episode with one Ray actor less that with one local "
            "actor; rounds: " + ", ".join(f"{ms:.1f}" for ms in ray_costs_ms) + " ms), plus "
            f"{ray['bytes_per_step']:.0f} bytes a step over a {link * 8 / 1e9:g} Gbit/s link; per "
            f"batch, {ray['weights_bytes'] / 1e6:.1f} MB of weights to each node, one after "
            f"another ({ray['weights_bytes'] / link * 1e3:.0f} ms each).",
        ]
    return lines


def markdown(record: dict[str, Any]) -> str:
    inputs, costs = record["inputs"], record["inputs"]["costs"]
    m, settings, level = record["machine"], record["settings"], record["inputs"]["level"]
    lines = [
        machine.markdown_header(
            m, "Scaling: where a run's time goes, by core count, CPU and GPU, by batch mode"
        ),
        f"Load average at the end: {m.get('load_average_at_end')}."
        + (f" While it ran: {settings['note']}" if settings["note"] else ""),
        "",
        "## Inputs",
        "",
        f"- Episodes: `{inputs['log']}`, the {settings['log_setting']} run: running "
        f"reward {level:g} at episode {inputs['episodes_to_level']:,} after "
        f"{inputs['steps_to_level'] / 1e6:.1f}M steps (batch {settings['log_batch']}). "
        "Mean episode length by stage: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in inputs["mean_steps_by_stage"].items())
        + " steps.",
        f"- Rollout speed of one actor on an idle core: {1 / costs['step_s']:,.0f} steps/s "
        f"({inputs['speed_source']}). For comparison the log's own per-episode speeds had a "
        f"median of {inputs['log_median_steps_per_s']:,.0f} steps/s (that run shared its cores "
        f"for a while), and one actor here, while the costs below were timed, "
        f"{inputs['actor_steps_per_s_here']:,.0f} steps/s (best of 5 games). Those costs are "
        "this machine's, under this load, set against that idle machine's actor speed; how fast "
        "the update is for an actor's speed differs between machines (CPU rows of "
        "`results/update*.md`), so the update's modelled share, and the times to the level, "
        "hold for this mix of the two.",
        f"- Weights to one worker process: {costs['weights_s'] * 1e3:.1f} ms a batch, measured "
        f"here; a share's way back to the trainer: {costs['return_s_per_step'] * 1e9:.0f} ns "
        "a step, measured here.",
        "- Update on the CPU, measured here (float32, best of "
        f"{settings['repeats']} after a warm-up; synthetic batches of B episodes x L steps):",
        "",
        *_update_table(inputs["cpu_update"], "episodes"),
        "",
        "- Update on a GPU: "
        + ("; ".join(inputs["gpu_sources"]) if inputs["gpu_sources"] else GPU_HOWTO)
        + ".",
        "",
        f"### Batches of steps (`--batch-steps {settings['batch_steps']}`)",
        "",
        *_steps_inputs(record),
        "",
        "## Modelled, side by side: whole episodes and batches of steps (CPU update)",
        "",
        "All figures in this section's tables are **modelled** from the inputs above, not "
        f"measured: means over {settings['resamples']} resamplings of the games; the time to "
        "the running reward level with its 5-95% range over them in the tables below.",
        "",
        "| N cores | actors | whole episodes: batch | idle in rollouts (modelled) | steps/s "
        f"(modelled) | time to {level:g} (modelled) | batches of steps: slots | idle in rollouts "
        f"(modelled) | steps/s (modelled) | time to {level:g} (modelled) |",
        "|---:|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for cores, actors in _setups(record):
        cells = [f"| {cores} | {actors} |"]
        for mode in MODES:
            row = _find(record, mode, cores, actors, "cpu")
            cells.append(
                f" {_batch(row)} | {_pct(row['idle_in_rollouts'])} | {row['steps_per_s']:,.0f} "
                f"| {_h(row['hours_to_level'])} |"
            )
        lines.append("".join(cells))
    lines += [
        "",
        f"Goal (issue 25): actors idle <= {GOAL_IDLE:.0%} of the rollouts at {GOAL_CORES} cores "
        "with batches of steps. By S, at that core count (modelled; the update, which the idle "
        "share in rollouts does not depend on, taken as none):",
        "",
        f"| S | batch at {GOAL_CORES} cores | actors idle in rollouts (modelled) | of it, waiting "
        "for the batch's last share (modelled) | a share past its quota, mean (modelled) | "
        "the longest share past the mean share (modelled) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in record["goal_by_batch_steps"]:
        lines.append(
            f"| {row['batch_steps']:,} | {_batch(row)} | {_pct(row['idle_in_rollouts'])} | "
            f"{_pct(row['waiting_in_rollouts'])} | {row['share_past_quota_mean']:,.0f} steps | "
            f"{row['longest_share_past_mean']:,.0f} steps |"
        )
    lines += [
        "",
        "## Modelled: whole episodes (today's default), a batch of max(10, N) episodes",
        "",
        *_model_table(record, "episodes"),
        "",
        f"## Modelled: batches of steps, S = {settings['batch_steps']:,} in C slots",
        "",
        *_model_table(record, "steps"),
        "",
        "GPU rows: "
        + ("from " + "; ".join(inputs["gpu_sources"]) if inputs["gpu_sources"] else GPU_HOWTO)
        + ".",
        "",
        'Update on "none (0 s)": an update that takes no time, the bound on what any GPU '
        "can buy at that core count. "
        '"Actors idle in rollouts" is the share pongxp\'s trainer reports at the end of a run '
        "(actors waiting for a batch's last episode or share; the streams' loading and saving "
        'and the way back count as waiting, as the trainer counts them); "overall" also counts '
        "the update and the weights' sending, when every actor waits. \"A share past its "
        'quota": the steps of the point under way when the quota was reached, the wait this '
        "mode has instead of the longest episode.",
        "",
        "## Check against training measured here: whole episodes",
        "",
    ]
    if record["check"]:
        lines += [
            "Training runs here (`bench_throughput`'s: the trainer itself, float32 CPU update, "
            f"a fresh agent, batch {record['check'][0]['batch']}, seed 0), timed on the "
            "trainer's clock from the first batch's last episode to the end (start-up and the "
            "first batch's seeding of every emulator left out). The model is given the same "
            "runs' episodes: (a) with each episode's logged time, the speed the actors really "
            "had; (b) at the model's actor speed (an idle core's). (a) tests the model itself: "
            "the schedule, the straggler wait, the update and the transfers. (b) also carries "
            "how far this machine's actors were from an idle core's speed; on a shared machine "
            "that dominates, so (b) is also set against the training speed measured on the idle "
            "machine (`results/throughput.json`, fresh agents of seeds 0-2, batch 10).",
            "",
            "| N | batches timed | steps/episode | actor steps/s logged | measured steps/s | "
            "(a) modelled | error | (b) modelled | error | measured, idle machine | (b) error "
            "against it |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in record["check"]:
            idle = (
                f"{row['idle_measured_steps_per_s']:,.0f} | "
                f"{row['error_model_speed_vs_idle']:+.1%} |"
                if "idle_measured_steps_per_s" in row
                else " | |"
            )
            lines.append(
                f"| {row['cores']} | {row['batches_timed']} | {row['steps_per_episode']:,.0f} | "
                f"{row['actor_steps_per_s_logged']:,.0f} | {_check_cells(row)} {idle}"
            )
    else:
        lines.append("Not run (`--no-check`).")
    lines += ["", "## Check against training measured here: batches of steps", ""]
    if record["check_steps"]:
        first = record["check_steps"][0]
        lines += [
            f"Training runs here with `--batch-steps {settings['batch_steps']}` (the trainer "
            f"itself through `bench_throughput._train`, float32 CPU update, a fresh agent, "
            f"{first['batch']} slots, seed 0, until {settings['check_steps_episodes']} episodes "
            "had ended), every share recorded as played from the trainer's own pool (steps, "
            "actor time, paused before and after). Timed on the trainer's clock after the first "
            "batch. The model is given the same runs' shares: (a) with each share's own actor "
            "time; (b) at the model's actor speed. Actors idle: the trainer's own count over the "
            "same batches, against (a)'s.",
            "",
            "| N | slots | batches timed | steps/batch | actor steps/s (shares) | measured "
            "steps/s | (a) modelled | error | (b) modelled | error | actors idle measured | "
            "(a) modelled |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in record["check_steps"]:
            lines.append(
                f"| {row['cores']} | {row['batch']} | {row['batches_timed']} | "
                f"{row['steps_per_batch']:,.0f} | {row['actor_steps_per_s_logged']:,.0f} | "
                f"{_check_cells(row)} {_pct(row['measured_idle_in_rollouts'])} | "
                f"{_pct(row['modelled_own_times']['idle_in_rollouts'])} |"
            )
    else:
        lines.append("Not run (`--no-check`).")
    lines += ["", "## Assumptions", ""] + [f"- {a}" for a in assumptions(record)] + [""]
    return "\n".join(lines)


def _check_cells(row: dict[str, Any]) -> str:
    """A check row's measured and modelled steps/s, with the model's errors."""
    return (
        f"{row['measured_steps_per_s']:,.0f} | "
        f"{row['modelled_own_times']['steps_per_s']:,.0f} | {row['error_own_times']:+.1%} | "
        f"{row['modelled_model_speed']['steps_per_s']:,.0f} | {row['error_model_speed']:+.1%} |"
    )


def assumptions(record: dict[str, Any]) -> list[str]:
    inputs, batch = record["inputs"], record["settings"]["log_batch"]
    steps = (
        f"Whole episodes: a batch other than the logged run's {batch} needs as many steps to "
        f"reach the level as the logged run did ({inputs['steps_to_level'] / 1e6:.1f}M to "
        f"{inputs['level']:g}). How steps to -10 changed with the batch (and its learning rate) "
        "is measured in bench/results/learning.md."
    )
    slots = (
        "Batches of steps: the steps to the level do not depend on the number of slots "
        f"({inputs['batch_steps']['steps_to_level'] / 1e6:.1f}M at every core count), as issue 25 "
        "expects of a fixed S; that is being tested by learning runs, not here."
    )
    return [ASSUMPTIONS[0], steps, slots, *ASSUMPTIONS[1:]]


ASSUMPTIONS = (
    "Every core runs one actor at the measured single-actor speed (no SMT, no shared memory "
    "bandwidth or frequency effects); the trainer's own work runs while the actors wait.",
    "Episode lengths at each point of a run follow the logged run's (resampled within "
    "--window episodes), whatever the batch size or mode.",
    "Batches of steps: a game's points are as long, relative to its mean point, as those of "
    "the recorded agent nearest in mean point; points are drawn independently of each other.",
    "The CPU update is the code's at the git commit above, timed here; the GPU update is "
    "the committed GPU rows' (their machine). Either is fitted as a fixed cost plus a cost "
    "per step to the timed rows of the nearest batch size, and used so beyond them.",
    "Ray: its per-call cost is the one measured with one actor on this 2-core machine under "
    "load, taken as the same on every node; the weights go to each node in turn over one "
    "1 Gbit/s link from the driver; the trainer's machine is not one of the nodes.",
)


def figure(record: dict[str, Any], path: Path) -> None:
    """Both modes against cores: steps/s, time to the level, the actors' idle share,
    where the actors' time goes, and the wait for the point under way."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig = Figure(figsize=(16, 9.5), dpi=100)
    FigureCanvasAgg(fig)
    (speed, hours, idle), (today, steps_mode, past) = fig.subplots(2, 3)
    level = record["inputs"]["level"]
    cores = sorted({r["cores"] for r in record["model"] if r["actors"] == "processes"})
    for mode, line in (("episodes", "-"), ("steps", "--")):
        rows = record["model_steps" if mode == "steps" else "model"]
        for device, colour, marker in (("cpu", "C0", "o"), ("gpu", "C1", "s"), ("none", "C2", "^")):
            update = "taking no time" if device == "none" else f"on the {DEVICES[device]}"
            label = f"{MODES[mode]}, update {update} (modelled)"
            ok = [
                r
                for r in rows
                if r["update_on"] == device and r["status"] == "ok" and r["actors"] == "processes"
            ]
            if not ok:
                if mode == "episodes":
                    speed.plot([], [], colour + marker, label="update on the GPU: pending")
                continue
            x = [r["cores"] for r in ok]
            style = dict(color=colour, marker=marker, linestyle=line, markersize=5)
            speed.plot(x, [r["steps_per_s"] for r in ok], label=label, **style)
            hours.plot(x, [60 * r["hours_to_level"] for r in ok], label=label, **style)
            if device == "cpu":
                idle.plot(x, [r["idle_in_rollouts"] for r in ok], label=label, **style)
        ray = [r for r in rows if r["update_on"] == "cpu" and r["actors"] != "processes"]
        ray_style = dict(color="C3", marker="*" if mode == "steps" else "P", linestyle="none",
                         markersize=10)  # fmt: skip
        label = f"{MODES[mode]}, Ray clusters, CPU update (modelled)"
        speed.plot([r["cores"] for r in ray], [r["steps_per_s"] for r in ray], label=label,
                   **ray_style)  # fmt: skip
        hours.plot([r["cores"] for r in ray], [60 * r["hours_to_level"] for r in ray],
                   label=label, **ray_style)  # fmt: skip
        idle.plot([r["cores"] for r in ray], [r["idle_in_rollouts"] for r in ray], label=label,
                  **ray_style)  # fmt: skip
    step_s = record["inputs"]["costs"]["step_s"]
    speed.plot(cores, [n / step_s for n in cores], "k:", label="N actors, never waiting")
    for checks, marker, label in (
        (record["check"], "kx", "whole episodes"),
        (record["check_steps"], "k1", "batches of steps"),
    ):
        if checks:
            speed.plot([r["cores"] for r in checks], [r["measured_steps_per_s"] for r in checks],
                       marker, markersize=11,
                       label=f"training measured here, {label}, shared cores")  # fmt: skip
    idle_checks = [r for r in record["check"] if "idle_measured_steps_per_s" in r]
    speed.plot([r["cores"] for r in idle_checks],
               [r["idle_measured_steps_per_s"] for r in idle_checks], "k+", markersize=11,
               label="training measured on the idle machine, whole episodes")  # fmt: skip
    idle.axhline(GOAL_IDLE, color="k", linestyle=":", label=f"goal at {GOAL_CORES} cores")
    for ax, corner in ((speed, "upper left"), (hours, "upper right"), (idle, "upper left")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(cores, [str(n) for n in cores])
        ax.set_xlabel("cores (actors)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc=corner)
    for ax in (speed, hours):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    speed.set_ylabel("training steps/s")
    speed.set_title("Training speed (modelled)")
    hours.set_yticks([1, 2, 3, 5, 10, 20, 30, 60, 120, 240, 480])
    hours.set_ylabel(f"minutes to running reward {level:g}")
    hours.set_title(f"Time to running reward {level:g} (modelled)")
    idle.set_ylabel("share of the actors' rollout time")
    idle.set_title("Actors idle in rollouts, CPU update (modelled)")
    for ax, mode in ((today, "episodes"), (steps_mode, "steps")):
        _shares_bars(ax, record, mode)
    rows = [r for r in record["model_steps"] if r["update_on"] == "cpu"]
    x = np.arange(len(rows))
    past.bar(x - 0.2, [r["share_past_quota_mean"] for r in rows], 0.4,
             label="a share past its quota, mean")  # fmt: skip
    past.bar(x + 0.2, [r["longest_share_past_mean"] for r in rows], 0.4,
             label="a batch's longest share past its mean share")  # fmt: skip
    past.set_xticks(x, [f"{_where(r)}\n{r['batch']}x{r['quota']}" for r in rows], fontsize=7)
    past.set_xlabel("cores; slots x quota (steps)")
    past.set_ylabel("steps")
    past.set_title("Batches of steps: the wait for a point (modelled)")
    past.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def _where(row: dict[str, Any]) -> str:
    """A modelled row's cores, for a figure's axis: "16", or "Ray 16"."""
    return str(row["cores"]) if row["actors"] == "processes" else f"Ray {row['cores']}"


def _shares_bars(ax: Any, record: dict[str, Any], mode: str) -> None:
    """Where one mode's actor time goes by setup, CPU update, as stacked bars."""
    rows = [
        r
        for r in record["model_steps" if mode == "steps" else "model"]
        if r["update_on"] == "cpu" and r["status"] == "ok"
    ]
    x = np.arange(len(rows))
    busy = np.array([1 - r["idle_overall"] for r in rows])
    update = np.array([r["update_share"] for r in rows])
    weights = np.array([r["weights_share"] for r in rows])
    bottom = np.zeros(len(rows))
    last = "share" if mode == "steps" else "episode"
    for part, label in (
        (busy, "actors playing"),
        (1 - busy - update - weights, f"waiting for a batch's last {last}; streams, way back"),
        (weights, "weights to the workers"),
        (update, "update (CPU)"),
    ):
        ax.bar(x, part, bottom=bottom, label=label)
        bottom += part
    ax.set_xticks(x, [_where(r) for r in rows], fontsize=8)
    ax.set_xlabel("cores (actors)")
    ax.set_ylabel("share of the actors' wall time")
    ax.set_title(f"The actors' time, {MODES[mode]}, CPU update (modelled)")
    ax.legend(fontsize=8, loc="lower left")


# -- the run --------------------------------------------------------------------------
def parse_cluster(text: str) -> tuple[int, int]:
    """``KxC`` as (K nodes, C cores each), both positive.

    Raises:
        ConfigError: not of that form.
    """
    nodes, _, cores = text.partition("x")
    if not (nodes.isdigit() and cores.isdigit() and int(nodes) > 0 and int(cores) > 0):
        raise ConfigError(f"--ray-clusters {text!r}: give K nodes x C cores, e.g. 4x16")
    return int(nodes), int(cores)


def check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a bad number or a missing log in one line, before any measuring."""
    try:
        for flag, value in (
            ("--min-batch", args.min_batch),
            ("--log-batch", args.log_batch),
            ("--resamples", args.resamples),
            ("--window", args.window),
            ("--repeats", args.repeats),
            ("--batch-steps", args.batch_steps),
            ("--check-steps-episodes", args.check_steps_episodes),
            *(("--cores", n) for n in args.cores),
            *(("--goal-batch-steps", n) for n in args.goal_batch_steps),
            *(("--update-lengths", n) for n in args.update_lengths),
        ):
            check_number(flag, value, 1)
        check_number("--check-batches", args.check_batches, 2)
        check_number("--level", args.level, -21, 21, integer=False)
        if args.steps_to_level is not None:
            check_number("--steps-to-level", args.steps_to_level, 1, integer=False)
        for text in args.ray_clusters:
            parse_cluster(text)
    except ConfigError as exc:
        parser.error(str(exc))
    for flag, path in (
        ("--log", args.log),
        ("--steps-assumed-log", args.steps_assumed_log),
        ("--steps-log", args.steps_log),
    ):
        if path is not None and not path.is_file():
            parser.error(f"{flag} {path} is not a file; give a training run's metrics log")
    if not args.points.is_file():
        parser.error(f"--points {args.points} is not a file; make it with bench/bench_points.py")


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it, for the results."""
    resolved = path.resolve()
    return (
        str(resolved.relative_to(machine.ROOT))
        if resolved.is_relative_to(machine.ROOT)
        else str(path)
    )


def steps_run(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> tuple[RunLog, int, float, dict[str, Any]]:
    """The games of the batch-of-steps model and the steps it needs to the level:
    (log, its episodes used, steps, where they come from).

    From ``--steps-log`` (a run in that mode) once it reached the level; else
    ``--steps-assumed-log``'s, an assumption; ``--steps-to-level`` overrides
    the steps either way.
    """
    source: dict[str, Any] = {}
    if args.steps_log is not None:
        log = RunLog.read(args.steps_log)
        source["steps_log"] = {
            "log": _shown(args.steps_log),
            "episodes": len(log.steps),
            "total_steps": int(log.total_steps[-1]),
            "running_reward": float(log.running[-1]),
            "best_running_reward": float(log.running.max()),
        }
        episodes = log.episodes_to(args.level)
        if episodes:
            source.update(games=_shown(args.steps_log), steps_from="measured")
            steps = float(log.total_steps[episodes - 1])
            return log, episodes, args.steps_to_level or steps, source
    log = RunLog.read(args.steps_assumed_log)
    episodes = log.episodes_to(args.level)
    if episodes == 0:
        parser.error(
            f"--steps-assumed-log {args.steps_assumed_log} never reaches a running reward "
            f"of {args.level:g}"
        )
    source.update(games=_shown(args.steps_assumed_log), steps_from="assumed")
    steps = float(log.total_steps[episodes - 1])
    if args.steps_to_level is not None:
        source["steps_from"] = "given"
        steps = args.steps_to_level
    return log, episodes, steps, source


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, nargs="+", default=list(CORES))
    parser.add_argument(
        "--min-batch",
        type=int,
        default=TrainConfig().batch_size,
        help="batch = max(this, cores); slots of a batch of steps: the smallest multiple of "
        "the cores not below this",
    )
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG, help="the run to model")
    parser.add_argument("--log-batch", type=int, default=10, help="the logged run's batch size")
    parser.add_argument(
        "--log-setting", default="`--preset fast`", help="the logged run's settings, for the .md"
    )
    parser.add_argument("--level", type=float, default=0.0, help="running reward to reach")
    parser.add_argument("--resamples", type=int, default=20)
    parser.add_argument("--window", type=int, default=500, help="episodes to resample from")
    parser.add_argument(
        "--update-lengths",
        type=int,
        nargs="+",
        default=[1000, 4000, 8000],
        help="episode lengths (steps) of the timed CPU updates",
    )
    parser.add_argument(
        "--batch-steps", type=int, default=34_000, help="S of the batch-of-steps model"
    )
    parser.add_argument(
        "--points",
        type=Path,
        default=machine.RESULTS / "points.json",
        help="real games' point lengths by skill (bench_points.py)",
    )
    parser.add_argument(
        "--goal-batch-steps",
        type=int,
        nargs="*",
        default=[68_000, 136_000],
        help=f"more S whose actors' idle share at {GOAL_CORES} cores is modelled, for the goal",
    )
    parser.add_argument(
        "--steps-log",
        type=Path,
        help="a --batch-steps learning run's log: its steps to the level, once it got there",
    )
    parser.add_argument(
        "--steps-assumed-log",
        type=Path,
        default=machine.RESULTS / "many-cores-s0.jsonl",
        help="until then: the run whose steps to the level (and games) are assumed",
    )
    parser.add_argument(
        "--steps-to-level", type=float, help="give the batch-of-steps run's steps to the level"
    )
    parser.add_argument(
        "--ray-clusters",
        nargs="*",
        default=["2x8", "4x16"],
        help="Ray clusters modelled, K nodes x C cores",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
    parser.add_argument("--check-batches", type=int, default=12, help="batches per check run")
    parser.add_argument(
        "--check-steps-episodes",
        type=int,
        default=300,
        help="episodes per batch-of-steps check run (a fresh agent: ~25 a batch at S = 34,000)",
    )
    parser.add_argument("--check-cores", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--no-check", action="store_true", help="skip the training runs")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seed", type=int, default=0, help="of the resampling")
    parser.add_argument("--note", default="", help="what else ran on the machine, for the .md")
    parser.add_argument("--out", type=Path, default=machine.RESULTS)
    parser.add_argument("--name", default="scaling", help="results file stem")
    args = parser.parse_args(argv)
    check_flags(parser, args)
    log = RunLog.read(args.log)
    episodes = log.episodes_to(args.level)
    if episodes == 0:
        parser.error(f"--log {args.log} never reaches a running reward of {args.level:g}")
    steps_log, steps_episodes, steps_to_level, steps_source = steps_run(args, parser)
    shapes = PointShapes.read(args.points)
    clusters = [parse_cluster(text) for text in args.ray_clusters]

    info = machine.describe()
    print(machine.markdown_header(info, "Scaling benchmark"), flush=True)
    started = time.perf_counter()
    env_id = TrainConfig().env_id
    speed, idle_training, speed_source = idle_speeds(machine.RESULTS)
    batches = sorted({max(args.min_batch, n) for n in args.cores})
    cpu_rows = measure_cpu_update(
        [(b, length) for b in batches for length in args.update_lengths], args.repeats, args.dtype
    )
    all_cores = [*args.cores, *(k * c for k, c in clusters), *args.check_cores]
    slots = sorted({step_slots(n, args.min_batch) for n in all_cores})
    quotas = {c: slot_quota(args.batch_steps, c) or 0 for c in slots}
    # Shares run from the quota to about half as long again (the point under way).
    step_rows = measure_cpu_update(
        [(c, quotas[c] * k // 4) for c in slots for k in (4, 5, 6)],
        args.repeats,
        args.dtype,
    )
    costs = Costs(
        step_s=1 / speed,
        # Milliseconds each: many repeats, the best of which is the least disturbed.
        weights_s=measure_weights_send(env_id, args.dtype, 20),
        return_s_per_step=measure_episode_return(5000, 20),
        stream=measure_stream(env_id, args.dtype, 30),
    )
    speed_here = measure_actor_speed(env_id, args.dtype, 5)
    print(f"costs: {costs}; one actor here: {speed_here:,.0f} steps/s", flush=True)
    setups, ray_source = [], {}
    for nodes, node_cores in clusters:
        ray, ray_source = ray_costs(machine.RESULTS, costs.step_s, costs.stream, nodes)
        setups.append(Setup(nodes * node_cores, ray, f"Ray, {nodes} nodes x {node_cores} cores"))
    gpu, gpu_sources = gpu_rows(machine.RESULTS, args.dtype)
    stages = {
        f"{a + 1:,}-{min(b, episodes):,}": float(log.steps[a : min(b, episodes)].mean())
        for a, b in (
            (0, 1000),
            (1000, 2000),
            (2000, 3000),
            (3000, 4000),
            (4000, 5000),
            (5000, episodes),
        )
        if a < episodes
    }
    record: dict[str, Any] = {
        "machine": info,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("out", "name")
        },
        "inputs": {
            "log": _shown(args.log),
            "level": args.level,
            "episodes_to_level": episodes,
            "steps_to_level": int(log.steps[:episodes].sum()),
            "mean_steps_by_stage": stages,
            "log_median_steps_per_s": float(np.median(log.rates[:episodes])),
            "speed_source": speed_source,
            "actor_steps_per_s_here": speed_here,
            "costs": asdict(costs),
            "cpu_update": [vars(r) for r in cpu_rows],
            "gpu_update": [vars(r) for r in gpu],
            "gpu_sources": gpu_sources,
            "ray": ray_source,
            "batch_steps": {
                **steps_source,
                "episodes_to_level": steps_episodes,
                "steps_to_level": steps_to_level,
                "points": _shown(args.points),
                "point_shapes": dict(zip(shapes.names, shapes.means.tolist(), strict=True)),
                "cpu_update": [vars(r) for r in step_rows],
            },
        },
    }
    updates = {"cpu": cpu_rows, "gpu": gpu, "none": [UpdateRow(args.min_batch, 1, 0.0)]}
    record["model"] = model(
        log,
        episodes,
        args.cores,
        args.min_batch,
        costs,
        updates,
        args.resamples,
        args.window,
        args.seed,
        setups,
    )
    record["model_steps"] = model_steps(
        steps_log,
        steps_episodes,
        steps_to_level,
        [Setup(n, costs) for n in args.cores] + setups,
        args.min_batch,
        args.batch_steps,
        shapes,
        {**updates, "cpu": step_rows},
        args.resamples,
        args.window,
        args.seed,
    )
    # The idle share alone, which no update changes: an update taking no time.
    record["goal_by_batch_steps"] = [
        model_steps(
            steps_log,
            steps_episodes,
            steps_to_level,
            [Setup(GOAL_CORES, costs)],
            args.min_batch,
            batch_steps,
            shapes,
            {"none": updates["none"]},
            args.resamples,
            args.window,
            args.seed,
        )[0]
        for batch_steps in [args.batch_steps, *args.goal_batch_steps]
    ]
    checking = not args.no_check and args.check_cores
    record["check"] = (
        check(
            args.check_cores,
            args.check_batches,
            env_id,
            args.dtype,
            costs,
            cpu_rows,
            args.min_batch,
            idle_training,
        )
        if checking
        else []
    )
    record["check_steps"] = (
        check_steps(
            args.check_cores,
            args.check_steps_episodes,
            args.batch_steps,
            args.min_batch,
            env_id,
            args.dtype,
            costs,
            step_rows,
        )
        if checking
        else []
    )
    record["verdicts"] = verdicts(record)
    machine.finish_record(record, started)
    machine.write_results(record, markdown(record), args.out, args.name)
    figure(record, args.out / f"{args.name}.png")
    print(f"wrote {args.out / (args.name + '.png')}")


if __name__ == "__main__":
    main()
