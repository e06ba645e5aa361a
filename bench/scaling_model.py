"""The scaling model: a run's batches played on N actors, whole episodes or batches
of steps, the update on the CPU, a GPU, or taking no time.

Whole episodes: a batch of max(--min-batch, N) episodes, lengths resampled from a
learning log around that point of the run, handed out in slot order to the first
free actor (as ``workers.ActorPool`` does); then the update. Batches of steps: C
slots (the smallest multiple of N not below --min-batch), each playing its own
stream of the log's games cut into real points (``bench_points.py``); a share is
cut by the trainer's own rule, ``slot_share.share_ends`` with ``slot_quota``'s
quota, so the model cannot drift from the code. Assumptions: bench/README.md.
"""

from __future__ import annotations

import heapq
import json
import math
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pongxp.slot_share import share_ends, slot_quota

#: The update's devices as the tables name them; "none" takes no time (the most any GPU buys).
DEVICES = {"cpu": "CPU", "gpu": "GPU", "none": "none (0 s)"}
GPU_HOWTO = "pending: no GPU rows in results/update*.json (bench_update.py on a GPU)"


@dataclass(frozen=True)
class RunLog:
    """A run's per-episode log, (E,) arrays: steps, running reward, the episode's
    reward and the run's steps by then."""

    steps: np.ndarray
    running: np.ndarray
    rewards: np.ndarray
    total_steps: np.ndarray

    @classmethod
    def read(cls, path: Path) -> RunLog:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        steps = np.array([r["steps"] for r in records], dtype=np.int64)
        totals = [r.get("total_steps") for r in records]
        return cls(
            steps,
            np.array([r["running_reward"] for r in records], dtype=np.float64),
            np.array([r["reward"] for r in records], dtype=np.int64),
            np.array(totals, dtype=np.int64) if None not in totals else np.cumsum(steps),
        )

    def episodes_to(self, level: float) -> int:
        """Episodes until the running reward first reached ``level``; 0 if never."""
        reached = np.flatnonzero(self.running >= level)
        return int(reached[0]) + 1 if reached.size else 0


@dataclass(frozen=True)
class UpdateRow:
    """One timed update: a batch of ``episodes`` pieces, ``steps`` steps in all."""

    episodes: int
    steps: int
    seconds: float


#: Timed update rows by device ("cpu", "gpu", "none").
Updates = dict[str, list[UpdateRow]]


def on(rows: Sequence[UpdateRow]) -> Callable[[int, float], float]:
    """``update(episodes, steps)`` in seconds: max(a + b * steps, the fastest row),
    a + b * T fitted by least squares to the rows of the nearest piece count."""
    fits: dict[int, tuple[float, float, float]] = {}

    def update(episodes: int, steps: float) -> float:
        if episodes not in fits:
            counts = sorted({r.episodes for r in rows})
            near = min(counts, key=lambda e: abs(np.log(e / episodes)))
            x = np.array([r.steps for r in rows if r.episodes == near], dtype=np.float64)
            y = np.array([r.seconds for r in rows if r.episodes == near])
            b, a = np.polyfit(x, y, 1) if len(x) > 1 else (0.0, y[0])
            fits[episodes] = float(a), float(b), float(y.min())
        a, b, floor = fits[episodes]
        return max(a + b * steps, floor)

    return update


def gpu_rows(results: Path, dtype: str) -> tuple[list[UpdateRow], list[str]]:
    """The GPU update rows (sparse CSR, ``dtype``) of ``results/update*.json`` and
    where they came from; none before a GPU run is committed."""
    rows: list[UpdateRow] = []
    sources: list[str] = []
    for path in sorted(results.glob("update*.json")):
        record = json.loads(path.read_text())
        episodes = record.get("synthetic_batch", {}).get("episodes", 10)
        found = [
            UpdateRow(int(r.get("episodes", episodes)), int(r["steps"]), float(r["update_s"]))
            for r in record.get("update", [])
            if (r.get("device"), r.get("status"), r.get("frames"), r.get("dtype"))
            == ("gpu", "ok", "sparse CSR", dtype)
        ]
        if found:
            gpu = record["machine"].get("gpu", {})
            sources.append(f"results/{path.name} ({gpu.get('name', 'GPU')}, {len(found)} rows)")
            rows.extend(found)
    return rows, sources


def makespan(durations: Sequence[float], actors: int) -> float:
    """Wall time of one batch's rollouts: shares handed out in slot order to the
    first free actor; the batch ends with its last share."""
    free = [0.0] * min(actors, len(durations))
    for d in durations:
        heapq.heapreplace(free, free[0] + d)
    return max(free)


@dataclass(frozen=True)
class StreamCosts:
    """Seconds to load a slot's stream into an actor before a share and save it
    after (``workers.play_stream``): between games, or with a game paused mid-way."""

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
    call_s: float = 0.0  # per share besides its bytes: a Ray call's own cost
    nodes: int = 0  # Ray nodes, each pulling the weights in turn; 0: worker processes

    def weights_out(self, actors: int) -> float:
        """Seconds per batch to get the weights to ``actors`` actors (one actor
        plays in the trainer's process: none)."""
        return (self.nodes or (actors if actors > 1 else 0)) * self.weights_s

    def way_back(self, actors: int, steps: np.ndarray) -> np.ndarray:
        """(S,) seconds for each of a batch's (S,) shares of ``steps`` to come back."""
        if self.nodes == 0 and actors == 1:
            return np.zeros_like(steps, dtype=np.float64)
        return self.call_s + steps * self.return_s_per_step


def play(lengths: Sequence[np.ndarray], busy: Sequence[np.ndarray], actors: int, costs: Costs,
         paused: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:  # fmt: skip
    """(6, B) per batch on ``actors`` actors: its shares, steps, rollout wall time, the
    actors' busy time (as the trainer counts it), the weights' sending, and the
    actors' held time (busy, each share's stream and way back), from each batch's
    (S,) share lengths and actor seconds; ``paused``: per batch, each share's game
    paused before it, after it."""
    rows = []
    for b, (steps, seconds) in enumerate(zip(lengths, busy, strict=True)):
        before, after = paused[b] if paused is not None else (False, False)
        held = seconds + costs.stream.around(before, after) + costs.way_back(actors, steps)
        rows.append(
            (len(steps), steps.sum(), makespan(held, actors), seconds.sum(),
             costs.weights_out(actors), held.sum())
        )  # fmt: skip
    return np.array(rows, dtype=np.float64).T


def summarise(
    played: np.ndarray, actors: int, update: Callable[[int, float], float]
) -> dict[str, float]:
    """Steps/s and shares of time of ``played`` with ``update(episodes, steps)`` seconds."""
    shares, steps, rollout, busy, weights, held = played
    updates = np.array([update(int(e), s) for e, s in zip(shares, steps, strict=True)])
    wall = (weights + rollout + updates).sum()
    return {
        "steps_per_s": float(steps.sum() / wall),
        "idle_in_rollouts": float(1 - busy.sum() / (actors * rollout.sum())),
        # Of it, waiting for the batch's last share (no stream or transfer).
        "waiting_in_rollouts": float(1 - held.sum() / (actors * rollout.sum())),
        "update_share": float(updates.sum() / wall),
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
    """``cores`` actors with ``costs``; ``actors`` names them ("processes", a Ray cluster)."""

    cores: int
    costs: Costs
    actors: str = "processes"


def device_rows(head: dict[str, Any], runs: Sequence[np.ndarray], cores: int,
                updates: Updates, to_level: float) -> list[dict[str, Any]]:  # fmt: skip
    """One row per update device: ``head``, the means over ``runs`` (one per
    resampling), and the hours to ``to_level`` steps with their 5-95% range."""
    rows = []
    for device, device_updates in updates.items():
        row: dict[str, Any] = {**head, "update_on": device, "status": "ok"}
        rows.append(row)
        if not device_updates:
            row["status"] = GPU_HOWTO
            continue
        each = [summarise(run, cores, on(device_updates)) for run in runs]
        row.update({key: statistics.fmean(r[key] for r in each) for key in each[0]})
        hours = [to_level / r["steps_per_s"] / 3600 for r in each]
        row["hours_to_level"] = to_level / row["steps_per_s"] / 3600
        row["hours_to_level_p5_p95"] = [float(np.percentile(hours, q)) for q in (5, 95)]
    return rows


def model(log: RunLog, episodes: int, cores: Sequence[int], min_batch: int, costs: Costs,
          updates: Updates, resamples: int, window: int, seed: int,
          clusters: Sequence[Setup] = ()) -> list[dict[str, Any]]:  # fmt: skip
    """Rows of whole-episode batches, per core count (then Ray cluster) and device."""
    steps = log.steps[:episodes].astype(np.float64)
    rng = np.random.default_rng(seed)
    rows = []
    for setup in [Setup(n, costs) for n in cores] + list(clusters):
        n, batch = setup.cores, max(min_batch, setup.cores)
        runs = []
        for _ in range(resamples):
            lengths = resampled(steps, batch, window, rng)
            runs.append(play(lengths, [x * setup.costs.step_s for x in lengths], n, setup.costs))
        head = {"mode": "episodes", "actors": setup.actors, "cores": n, "batch": batch}
        rows += device_rows(head, runs, n, updates, float(steps.sum()))
    return rows


#: Points in a game of score r: 21 for the winner and the loser's 21 - |r|.
POINTS_PER_GAME = 42


@dataclass(frozen=True)
class PointShapes:
    """Real games' point lengths relative to their game's mean point, by agent
    (``bench_points.py``): names, each agent's mean point (steps), the shapes."""

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
        """42 - |reward| point lengths summing to ``steps``, shaped as the points of
        the agent whose mean point is nearest (by ratio) this game's."""
        count = POINTS_PER_GAME - abs(reward)
        agent = int(np.argmin(np.abs(np.log(self.means * count / steps))))
        shape = rng.choice(self.relative[agent], size=count)
        # A step each, the rest as the shape says, rounded on the running sum.
        ends = np.rint(np.cumsum(shape) * ((steps - count) / shape.sum())).astype(np.int64)
        return (1 + np.diff(ends, prepend=0)).tolist()


def step_slots(cores: int, min_slots: int) -> int:
    """Slots of a batch of steps: the smallest multiple of ``cores`` not below
    ``min_slots``, so that every actor plays as many shares."""
    return cores * math.ceil(min_slots / cores)


def cut_share(
    stream: deque[int], quota: int | None, next_game: Callable[[], list[int]]
) -> tuple[int, int]:
    """One slot's share, cut where ``slot_share.share_ends`` ends it: its steps and
    the games that ended in it. ``stream``: the point lengths of the game under way
    (consumed in place: a game going on at the end carries into the next batch);
    ``quota``: ``slot_quota``'s, None for one whole episode."""
    steps = ended = 0
    while True:
        if not stream:
            stream.extend(next_game())
        steps += stream.popleft()
        over = not stream
        ended += over
        # Asked at each point's last step, the only one with a non-zero reward;
        # the tests check the rule never ends a share at the other steps.
        if share_ends(steps, quota, 1.0, over):
            return steps, ended


@dataclass
class StepRun:
    """A run's batches of steps: per batch, (C,) steps of each share and (C,) bools
    (its game paused before it, after it)."""

    steps: list[np.ndarray]
    paused: list[tuple[np.ndarray, np.ndarray]]


def cut_run(log: RunLog, episodes: int, to_level: float, slots: int, quota: int,
            shapes: PointShapes, window: int, rng: np.random.Generator) -> StepRun:  # fmt: skip
    """Batches of ``slots`` shares until ``to_level`` steps are played; each slot's
    next game is one of the log's first ``episodes``, drawn within ``window`` of
    the games started so far, with points from ``shapes``."""
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
        played += int(cut[:, 0].sum())
    return run


def model_steps(log: RunLog, episodes: int, to_level: float, setups: Sequence[Setup],
                min_slots: int, batch_steps: int, shapes: PointShapes, updates: Updates,
                resamples: int, window: int, seed: int) -> list[dict[str, Any]]:  # fmt: skip
    """Rows of batches of ``batch_steps`` steps, per setup and device: the games are
    ``log``'s first ``episodes``, the run needs ``to_level`` steps."""
    cuts: dict[int, list[StepRun]] = {}
    rows = []
    for setup in setups:
        slots = step_slots(setup.cores, min_slots)
        quota = slot_quota(batch_steps, slots)
        assert quota is not None
        if slots not in cuts:  # the shares depend on the slots alone
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
        head = {
            "mode": "steps",
            "actors": setup.actors,
            "cores": setup.cores,
            "batch": slots,
            "quota": quota,
            "share_past_quota_mean": float(shares.mean() - quota),
            "share_past_quota_p95": float(np.percentile(shares, 95) - quota),
        }
        rows += device_rows(head, runs, setup.cores, updates, to_level)
    return rows
