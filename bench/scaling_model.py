"""The scaling model: a run's batches played on N actors, whole episodes or batches
of steps, with the update on the CPU, a GPU, or taking no time.

Whole episodes: N actors and a batch of B = max(--min-batch, N) episodes. Each
batch sends the weights to the workers, hands its episodes out in slot order to
whichever actor is free first (as ``workers.ActorPool`` does), waits for its
last episode, then updates. Episode lengths are resampled per batch from a
learning log's episodes around that point of the run.

Batches of steps (``--batch-steps S``): C slots for N actors, the smallest
multiple of N not below --min-batch. Each slot plays its own stream of games
from the log, each game cut into 42 - |reward| points shaped like real games'
points (``bench_points.py``). A share is cut by the trainer's own rule,
``slot_share.share_ends`` with ``slot_quota``'s quota, so the model cannot drift
from the code: at least ceil(S / C) steps, then to the end of the point under
way, a game still going carried into the next batch.

Assumptions (also in bench/README.md): every core runs one actor at the
measured single-actor speed; episode lengths follow the logged run's whatever
the batch or mode; a game's points are drawn independently, shaped as the
recorded agent's nearest in mean point; the update is a fixed cost plus a cost
per step fitted to the timed rows of the nearest batch size; the steps to the
level do not depend on the batch size or the slots.
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

#: The devices the update is modelled on, as the tables name them; "none" is an update
#: that takes no time: the most that any GPU could buy.
DEVICES = {"cpu": "CPU", "gpu": "GPU", "none": "none (0 s)"}
GPU_HOWTO = (
    "pending: no GPU rows committed; run `python bench/bench_update.py --name update-gpu` "
    "on a CUDA machine and commit bench/results/update-gpu.json"
)


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
