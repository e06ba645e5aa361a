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

    python bench/bench_scaling.py                 # measure, model, check: bench/results/scaling.*
    python bench/bench_scaling.py --no-check      # no training runs (the model only)
"""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing as mp
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
import machine

from pongxp.config import INPUT_SIZE, ConfigError, TrainConfig, check_number

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
    reward, and the trainer's elapsed seconds when the episode was logged."""

    steps: np.ndarray
    rates: np.ndarray
    running: np.ndarray
    times: np.ndarray

    @classmethod
    def read(cls, path: Path) -> RunLog:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return cls(
            np.array([r["steps"] for r in records], dtype=np.int64),
            np.array([r["steps_per_s"] for r in records], dtype=np.float64),
            np.array([r["running_reward"] for r in records], dtype=np.float64),
            np.array([r["time"] for r in records], dtype=np.float64),
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
    batches: Sequence[int], lengths: Sequence[int], repeats: int, dtype: str
) -> list[UpdateRow]:
    """The CPU update, best of ``repeats`` after one warm-up, for every batch size and
    episode length: synthetic batches shaped like real rollouts (``bench_update``)."""
    import bench_update

    from pongxp import backend as backend_mod

    backend = backend_mod.select("cpu", dtype)
    rng = np.random.default_rng(0)
    rows = []
    for episodes in batches:
        for length in lengths:
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


# -- the model ------------------------------------------------------------------------
def makespan(durations: Sequence[float], actors: int) -> float:
    """Wall time of one batch's rollouts: episodes handed out in slot order, each to
    the actor that frees up first; the batch ends with its last episode."""
    free = [0.0] * min(actors, len(durations))
    for d in durations:
        heapq.heapreplace(free, free[0] + d)
    return max(free)


@dataclass(frozen=True)
class Costs:
    """What one batch costs besides its update (seconds)."""

    step_s: float  # one emulator step of one actor, policy included
    weights_s: float  # the weights to one worker process
    return_s_per_step: float  # an episode's way back from its worker, per step


@dataclass
class Batches:
    """Batches of a run as the actors play them, one entry per batch: its episodes,
    steps, rollout wall time (straggler wait included), the actors' busy time and
    the time to send the weights."""

    episodes: np.ndarray
    steps: np.ndarray
    rollout_s: np.ndarray
    busy_s: np.ndarray
    weights_s: np.ndarray


def chunks(values: np.ndarray, size: int) -> list[np.ndarray]:
    """``values`` cut into consecutive pieces of ``size`` (the last may be shorter)."""
    return [values[i : i + size] for i in range(0, len(values), size)]


def play(
    lengths: Sequence[np.ndarray], busy: Sequence[np.ndarray], actors: int, costs: Costs
) -> Batches:
    """The rollout side of batches on ``actors`` actors: per batch, its episodes'
    lengths (steps) and the actor time each takes (seconds)."""
    rows = []
    for steps, seconds in zip(lengths, busy, strict=True):
        # With worker processes an actor gets its next slot once its episode is back.
        held = seconds + (steps * costs.return_s_per_step if actors > 1 else 0.0)
        weights = actors * costs.weights_s if actors > 1 else 0.0
        rows.append((len(steps), steps.sum(), makespan(held, actors), seconds.sum(), weights))
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
) -> list[dict[str, Any]]:
    """Modelled rows, one per core count and update device (see the module doc)."""
    steps = log.steps[:episodes].astype(np.float64)
    to_level = float(steps.sum())
    rng = np.random.default_rng(seed)
    rows = []
    for n in cores:
        batch = max(min_batch, n)
        runs = []
        for _ in range(resamples):
            lengths = resampled(steps, batch, window, rng)
            runs.append(play(lengths, [x * costs.step_s for x in lengths], n, costs))
        lengths = chunks(steps, batch)  # the logged run itself, in order
        replay = play(lengths, [x * costs.step_s for x in lengths], n, costs)
        for device, device_rows in updates.items():
            row: dict[str, Any] = {"cores": n, "batch": batch, "update_on": device}
            rows.append(row)
            if not device_rows:
                row["status"] = GPU_HOWTO
                continue
            each = [summarise(run, n, on(device_rows)) for run in runs]
            row.update({key: statistics.fmean(r[key] for r in each) for key in each[0]})
            hours = [to_level / r["steps_per_s"] / 3600 for r in each]
            row["hours_to_level"] = to_level / row["steps_per_s"] / 3600
            row["hours_to_level_p5_p95"] = [float(np.percentile(hours, q)) for q in (5, 95)]
            exact = summarise(replay, n, on(device_rows))
            row["replay"] = {**exact, "hours_to_level": to_level / exact["steps_per_s"] / 3600}
            row["status"] = "ok"
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
            print(
                f"check N={n}: measured {measured:.0f} steps/s; modelled "
                f"{row['modelled_own_times']['steps_per_s']:.0f} from the run's episode times "
                f"({row['error_own_times']:+.1%}), "
                f"{row['modelled_model_speed']['steps_per_s']:.0f} at the model's actor speed "
                f"({row['error_model_speed']:+.1%})",
                flush=True,
            )
            rows.append(row)
    return rows


# -- results --------------------------------------------------------------------------
def _h(hours: float, *more: float) -> str:
    """``hours`` (and ``more`` in the same unit, as a range) in hours or minutes."""
    scale, unit = (1, "h") if hours >= 1 else (60, "min")
    text = f"{hours * scale:.1f} {unit}"
    if more:
        text += " (" + "-".join(f"{h * scale:.1f}" for h in more) + ")"
    return text


def _pct(share: float) -> str:
    return f"{share:.1%}"


def verdicts(record: dict[str, Any]) -> list[str]:
    out = []
    for row in record["check"]:
        out.append(
            f"check N={row['cores']}: measured {row['measured_steps_per_s']:,.0f} training "
            f"steps/s; modelled {row['modelled_own_times']['steps_per_s']:,.0f} from the run's "
            f"own episode times ({row['error_own_times']:+.1%}), "
            f"{row['modelled_model_speed']['steps_per_s']:,.0f} at the model's actor speed "
            f"({row['error_model_speed']:+.1%}"
            + (
                f"; {row['error_model_speed_vs_idle']:+.1%} against "
                f"{row['idle_measured_steps_per_s']:,.0f} measured on the idle machine)"
                if "idle_measured_steps_per_s" in row
                else ")"
            )
        )
    for n in (16, 64):
        for row in record["model"]:
            if row["cores"] != n:
                continue
            if row["status"] != "ok":
                out.append(
                    f"modelled, {n} cores, update on: {DEVICES[row['update_on']]}: {row['status']}"
                )
                continue
            lo, hi = row["hours_to_level_p5_p95"]
            out.append(
                f"modelled, {n} cores, batch {row['batch']}, update on: "
                f"{DEVICES[row['update_on']]}: "
                f"{row['steps_per_s']:,.0f} steps/s, running reward "
                f"{record['inputs']['level']:g} after {_h(row['hours_to_level'], lo, hi)}, "
                f"update {_pct(row['update_share'])} of the time, actors idle "
                f"{_pct(row['idle_in_rollouts'])} of the rollouts"
            )
    return out


def markdown(record: dict[str, Any]) -> str:
    inputs, costs = record["inputs"], record["inputs"]["costs"]
    m = record["machine"]
    lines = [
        machine.markdown_header(m, "Scaling: where a run's time goes, by core count, CPU and GPU"),
        f"Load average at the end: {m.get('load_average_at_end')}."
        + (f" While it ran: {record['settings']['note']}" if record["settings"]["note"] else ""),
        "",
        "## Inputs",
        "",
        f"- Episodes: `{inputs['log']}`, the {record['settings']['log_setting']} run: running "
        f"reward {inputs['level']:g} at episode {inputs['episodes_to_level']:,} after "
        f"{inputs['steps_to_level'] / 1e6:.1f}M steps (batch {record['settings']['log_batch']}). "
        "Mean episode length by stage: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in inputs["mean_steps_by_stage"].items())
        + " steps.",
        f"- Rollout speed of one actor on an idle core: {1 / costs['step_s']:,.0f} steps/s "
        f"({inputs['speed_source']}). For comparison the log's own per-episode speeds had a "
        f"median of {inputs['log_median_steps_per_s']:,.0f} steps/s (that run shared its cores "
        "for a while).",
        f"- Weights to one worker process: {costs['weights_s'] * 1e3:.1f} ms a batch, measured "
        f"here; an episode's way back to the trainer: {costs['return_s_per_step'] * 1e9:.0f} ns "
        "a step, measured here.",
        "- Update on the CPU, measured here (float32, best of "
        f"{record['settings']['repeats']} after a warm-up; synthetic batches of B episodes x L "
        "steps):",
        "",
        "| B episodes | steps | update (ms) | per 10k steps (ms) |",
        "|---:|---:|---:|---:|",
    ]
    for r in inputs["cpu_update"]:
        lines.append(
            f"| {r['episodes']} | {r['steps']:,} | {r['seconds'] * 1e3:,.0f} | "
            f"{r['seconds'] / r['steps'] * 1e7:,.0f} |"
        )
    lines += [
        "",
        "- Update on a GPU: "
        + ("; ".join(inputs["gpu_sources"]) if inputs["gpu_sources"] else GPU_HOWTO)
        + ".",
        "",
        "## Modelled: N cores, N actors, a batch of max(10, N)",
        "",
        "All figures in this table are **modelled** from the inputs above, not measured. "
        f"Means over {record['settings']['resamples']} resamplings of the episode lengths; "
        "the time to the running reward level with its 5-95% range over them.",
        "",
        "| N cores | batch | update on | steps/s (modelled) | actors idle in rollouts "
        "(modelled) | actors idle overall (modelled) | update share (modelled) | "
        f"time to running reward {inputs['level']:g} (modelled) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in record["model"]:
        head = f"| {row['cores']} | {row['batch']} | {DEVICES[row['update_on']]} |"
        if row["status"] != "ok":
            lines.append(f"{head} pending | pending | pending | pending | pending |")
            continue
        lo, hi = row["hours_to_level_p5_p95"]
        lines.append(
            f"{head} {row['steps_per_s']:,.0f} | {_pct(row['idle_in_rollouts'])} | "
            f"{_pct(row['idle_overall'])} | {_pct(row['update_share'])} | "
            f"{_h(row['hours_to_level'], lo, hi)} |"
        )
    lines += [
        "",
        "GPU rows: "
        + ("from " + "; ".join(inputs["gpu_sources"]) if inputs["gpu_sources"] else GPU_HOWTO)
        + ".",
        "",
        'Update on "none (0 s)": an update that takes no time, the bound on what any GPU '
        "can buy at that core count. "
        '"Actors idle in rollouts" is the share pongxp\'s trainer reports at the end of a run '
        '(actors waiting for a batch\'s last episode); "overall" also counts the update and '
        "the weights' sending, when every actor waits.",
        "",
        "## Check against training measured here",
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
                f"{row['actor_steps_per_s_logged']:,.0f} | "
                f"{row['measured_steps_per_s']:,.0f} | "
                f"{row['modelled_own_times']['steps_per_s']:,.0f} | "
                f"{row['error_own_times']:+.1%} | "
                f"{row['modelled_model_speed']['steps_per_s']:,.0f} | "
                f"{row['error_model_speed']:+.1%} | {idle}"
            )
    else:
        lines.append("Not run (`--no-check`).")
    lines += ["", "## Assumptions", ""] + [f"- {a}" for a in assumptions(record)] + [""]
    return "\n".join(lines)


def assumptions(record: dict[str, Any]) -> list[str]:
    inputs, batch = record["inputs"], record["settings"]["log_batch"]
    steps = (
        f"A batch other than the logged run's {batch} needs as many steps to reach the level "
        f"as the logged run did ({inputs['steps_to_level'] / 1e6:.1f}M to {inputs['level']:g}). "
        "How steps to -10 changed with the batch (and its learning rate) is measured in "
        "bench/results/learning.md."
    )
    return [ASSUMPTIONS[0], steps, *ASSUMPTIONS[1:]]


ASSUMPTIONS = (
    "Every core runs one actor at the measured single-actor speed (no SMT, no shared memory "
    "bandwidth or frequency effects); the trainer's own work runs while the actors wait.",
    "Episode lengths at each point of a run follow the logged run's (resampled within "
    "--window episodes), whatever the batch size.",
    "The CPU update is the code's at the git commit above, timed here; the GPU update is "
    "the committed GPU rows' (their machine). Either is fitted as a fixed cost plus a cost "
    "per step to the timed rows of the nearest batch size, and used so beyond them.",
    "Worker processes (`--actors processes`); Ray's transfers are not modelled.",
)


def figure(record: dict[str, Any], path: Path) -> None:
    """steps/s and the time to the level against cores, and where the time goes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig = Figure(figsize=(15, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    speed, hours, shares = fig.subplots(1, 3)
    level = record["inputs"]["level"]
    for device, style in (("cpu", "C0o-"), ("gpu", "C1s-"), ("none", "C2--")):
        ok = [r for r in record["model"] if r["update_on"] == device and r["status"] == "ok"]
        label = (
            "update taking no time: the most a GPU can buy (modelled)"
            if device == "none"
            else f"update on the {DEVICES[device]} (modelled)"
        )
        if not ok:
            speed.plot([], [], style, label="update on the GPU: pending (no GPU rows)")
            continue
        cores = [r["cores"] for r in ok]
        speed.plot(cores, [r["steps_per_s"] for r in ok], style, label=label)
        lo = [r["hours_to_level_p5_p95"][0] for r in ok]
        hi = [r["hours_to_level_p5_p95"][1] for r in ok]
        hours.plot(cores, [60 * r["hours_to_level"] for r in ok], style, label=label)
        hours.fill_between(cores, [60 * h for h in lo], [60 * h for h in hi], color=style[:2],
                           alpha=0.25)  # fmt: skip
    step_s = record["inputs"]["costs"]["step_s"]
    cores = sorted({r["cores"] for r in record["model"]})
    speed.plot(cores, [n / step_s for n in cores], "k:", label="N actors, never waiting")
    if record["check"]:
        speed.plot(
            [r["cores"] for r in record["check"]],
            [r["measured_steps_per_s"] for r in record["check"]],
            "kx",
            markersize=9,
            label="training measured here, on shared cores (fresh agent)",
        )
        idle = [r for r in record["check"] if "idle_measured_steps_per_s" in r]
        speed.plot(
            [r["cores"] for r in idle],
            [r["idle_measured_steps_per_s"] for r in idle],
            "k+",
            markersize=11,
            label="training measured on the idle machine (fresh agents)",
        )
    for ax in (speed, hours):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(cores, [str(n) for n in cores])
        ax.set_xlabel("cores (actors); batch = max(10, cores)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    speed.set_ylabel("training steps/s")
    speed.set_title("Training speed (modelled)")
    hours.set_yticks([2, 3, 5, 10, 20, 30, 60, 120, 240, 480])
    hours.set_ylabel(f"minutes to running reward {level:g}")
    hours.set_title(f"Time to running reward {level:g} (modelled)")
    cpu = [r for r in record["model"] if r["update_on"] == "cpu" and r["status"] == "ok"]
    x = np.arange(len(cpu))
    busy = np.array([1 - r["idle_overall"] for r in cpu])
    update = np.array([r["update_share"] for r in cpu])
    weights = np.array([r["weights_share"] for r in cpu])
    wait = 1 - busy - update - weights
    bottom = np.zeros(len(cpu))
    for part, label in (
        (busy, "actors playing"),
        (wait, "waiting for a batch's last episode"),
        (weights, "weights to the workers"),
        (update, "update (CPU)"),
    ):
        shares.bar(x, part, bottom=bottom, label=label)
        bottom += part
    shares.set_xticks(x, [str(r["cores"]) for r in cpu])
    shares.set_xlabel("cores (actors)")
    shares.set_ylabel("share of the actors' wall time")
    shares.set_title("The actors' time, CPU update (modelled)")
    shares.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)


# -- the run --------------------------------------------------------------------------
def check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a bad number or a missing log in one line, before any measuring."""
    try:
        for flag, value in (
            ("--min-batch", args.min_batch),
            ("--log-batch", args.log_batch),
            ("--resamples", args.resamples),
            ("--window", args.window),
            ("--repeats", args.repeats),
            *(("--cores", n) for n in args.cores),
            *(("--update-lengths", n) for n in args.update_lengths),
        ):
            check_number(flag, value, 1)
        check_number("--check-batches", args.check_batches, 2)
        check_number("--level", args.level, -21, 21, integer=False)
    except ConfigError as exc:
        parser.error(str(exc))
    if not args.log.is_file():
        parser.error(f"--log {args.log} is not a file; give a training run's metrics log")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, nargs="+", default=list(CORES))
    parser.add_argument("--min-batch", type=int, default=10, help="batch = max(this, cores)")
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
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
    parser.add_argument("--check-batches", type=int, default=12, help="batches per check run")
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

    info = machine.describe()
    print(machine.markdown_header(info, "Scaling benchmark"), flush=True)
    started = time.perf_counter()
    speed, idle_training, speed_source = idle_speeds(machine.RESULTS)
    batches = sorted({max(args.min_batch, n) for n in args.cores})
    cpu_rows = measure_cpu_update(batches, args.update_lengths, args.repeats, args.dtype)
    costs = Costs(
        step_s=1 / speed,
        weights_s=measure_weights_send(TrainConfig().env_id, args.dtype, 5),
        return_s_per_step=measure_episode_return(5000, 5),
    )
    print(f"costs: {costs}", flush=True)
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
            "log": str(args.log.resolve().relative_to(machine.ROOT))
            if args.log.resolve().is_relative_to(machine.ROOT)
            else str(args.log),
            "level": args.level,
            "episodes_to_level": episodes,
            "steps_to_level": int(log.steps[:episodes].sum()),
            "mean_steps_by_stage": stages,
            "log_median_steps_per_s": float(np.median(log.rates[:episodes])),
            "speed_source": speed_source,
            "costs": vars(costs),
            "cpu_update": [vars(r) for r in cpu_rows],
            "gpu_update": [vars(r) for r in gpu],
            "gpu_sources": gpu_sources,
        },
    }
    record["model"] = model(
        log,
        episodes,
        args.cores,
        args.min_batch,
        costs,
        {"cpu": cpu_rows, "gpu": gpu, "none": [UpdateRow(args.min_batch, 1, 0.0)]},
        args.resamples,
        args.window,
        args.seed,
    )
    record["check"] = (
        []
        if args.no_check or not args.check_cores
        else check(
            args.check_cores,
            args.check_batches,
            TrainConfig().env_id,
            args.dtype,
            costs,
            cpu_rows,
            args.min_batch,
            idle_training,
        )
    )
    record["verdicts"] = verdicts(record)
    machine.finish_record(record, started)
    machine.write_results(record, markdown(record), args.out, args.name)
    figure(record, args.out / f"{args.name}.png")
    print(f"wrote {args.out / (args.name + '.png')}")


if __name__ == "__main__":
    main()
