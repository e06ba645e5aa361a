"""Steps per second: bare emulator vs rollouts only vs full training, for 1 and N envs.

For each number of envs N, in rounds that interleave the modes (so a busy
machine slows all of them alike), this measures:

- ``bare gym``: N processes, each stepping ``gym.make(env_id)`` with random
  up/down actions via ``env.step`` (the RGB observation Gymnasium builds
  included): what the env costs a Gymnasium user with no agent at all. The
  target's reference.
- ``bare ALE``: N processes, each running the same emulator loop with nothing
  else: the same frameskip draws and sticky actions, ``ale.act``, a copy of the
  raw palette screen and the end-of-game checks. A floor for any pixel agent.
- ``rollouts``: ``ActorPool(env_id, N)`` playing batches of ``--batch-size``
  episodes with fixed weights (preprocessing, policy, sampling, recording; no
  learning), as training hands them out. Also its actors' idle share: the part
  of N x the batches' wall time that no episode was being played, i.e. actors
  waiting for a batch's last episode.
- ``training``: ``pongxp.trainer.train`` on the CPU (float32 by default), an
  update every ``--batch-size`` episodes; steps / the trainer's own elapsed
  time over the batches after the first (the difference of a 1-batch and a
  ``--batches`` run from the same seed), which counts everything per batch
  (weights to the actors, episodes, metrics, stacking, the update,
  finiteness checks) but not start-up: processes, the first batch's seeding
  of every slot's emulator, or the final checkpoint.

Bare modes run for ``--bare-seconds`` after a warm-up; steps/s is the sum
over processes. Also shown: steps per CPU second, summed over the processes
doing the work, which a busy machine disturbs much less than wall-clock
speed (see ``run_training`` for how training's is taken). Optionally (on by
default) ale-py's native ``AtariVectorEnv`` (raw 210x160 frames, stack 1,
no max-pool) against N processes of the same fixed-frameskip env: the
measurement behind ``pongxp.workers`` using processes.

    python bench/bench_throughput.py                       # 1 and 2 envs, 3 rounds
    python bench/bench_throughput.py --num-envs 1 2 4 --rounds 5 --batches 4
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import array_api_compat.numpy as xp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
import machine

from pongxp.config import INPUT_SIZE, ConfigError, TrainConfig, check_number
from pongxp.policy import init_params
from pongxp.rollout import DOWN, UP, Actor, make_env
from pongxp.trainer import train
from pongxp.workers import ActorPool, fresh_streams, stream_seed

TARGET_RATIO = 0.90
MODES = ("bare gym", "bare ALE", "rollouts", "training")
WARMUP_STEPS = 300


# -- bare emulators, one process each ---------------------------------------------
def _bare_worker(conn: Any, env_id: str, seed: int, mode: str, seconds: float) -> None:
    """Step one env with random up/down actions for ``seconds``; send (steps, wall, cpu)."""
    warnings.filterwarnings("ignore")
    if mode == "vector-reference":  # gym env with the vector env's fixed settings
        import ale_py
        import gymnasium as gym

        gym.register_envs(ale_py)
        # Grayscale like the vector env's frames, so both produce the same observation.
        env = gym.make(env_id, frameskip=4, repeat_action_probability=0.25, obs_type="grayscale")
    else:
        env = make_env(env_id)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    step = _gym_stepper(env, rng) if mode != "bare ALE" else _ale_stepper(env, rng)
    step(WARMUP_STEPS, None)
    conn.send("ready")
    conn.recv()  # go
    wall, cpu = time.perf_counter(), time.process_time()
    steps = step(None, wall + seconds)
    conn.send((steps, time.perf_counter() - wall, time.process_time() - cpu))
    env.close()


def _gym_stepper(env: Any, rng: np.random.Generator) -> Any:
    def run(max_steps: int | None, deadline: float | None) -> int:
        steps = 0
        while True:
            for _ in range(100):
                _, _, terminated, truncated, _ = env.step(UP if rng.random() < 0.5 else DOWN)
                if terminated or truncated:
                    env.reset()
            steps += 100
            if (max_steps is not None and steps >= max_steps) or (
                deadline is not None and time.perf_counter() >= deadline
            ):
                return steps

    return run


def _ale_stepper(env: Any, rng: np.random.Generator) -> Any:
    """The emulator part of ``Actor._play_direct``, with random actions."""
    u = env.unwrapped
    ale, skip, draw = u.ale, u._frameskip, u.np_random.integers
    actions = (u._action_set[UP], u._action_set[DOWN])
    screen = np.zeros((210, 160), dtype=np.uint8)

    def run(max_steps: int | None, deadline: float | None) -> int:
        steps = 0
        while True:
            for _ in range(100):
                action = actions[0] if rng.random() < 0.5 else actions[1]
                for _ in range(skip if isinstance(skip, int) else int(draw(*skip))):
                    ale.act(action, 1.0)
                ale.getScreen(screen)
                if ale.game_over(with_truncation=False) or ale.game_truncated():
                    ale.reset_game()
                    ale.getScreen(screen)
            steps += 100
            if (max_steps is not None and steps >= max_steps) or (
                deadline is not None and time.perf_counter() >= deadline
            ):
                return steps

    return run


def run_bare(env_id: str, num_envs: int, mode: str, seconds: float, seed: int) -> dict[str, Any]:
    """N bare emulator processes started together; start-up and warm-up not timed."""
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for index in range(num_envs):
        parent, child = ctx.Pipe()
        args = (child, env_id, stream_seed(seed, index), mode, seconds)
        proc = ctx.Process(target=_bare_worker, args=args, daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    for conn in pipes:
        assert conn.recv() == "ready"
    for conn in pipes:
        conn.send("go")
    results = [conn.recv() for conn in pipes]
    for proc in procs:
        proc.join(timeout=30)
    steps = sum(r[0] for r in results)
    return {
        "steps": steps,
        "steps_per_s": sum(r[0] / r[1] for r in results),
        "steps_per_cpu_s": steps / sum(r[2] for r in results),
    }


def run_vector(num_envs: int, seconds: float, seed: int) -> dict[str, Any]:
    """ale-py's AtariVectorEnv, raw frames, random actions, in this process."""
    from ale_py.vector_env import AtariVectorEnv

    env = AtariVectorEnv(
        "pong",
        num_envs,
        img_height=210,
        img_width=160,
        stack_num=1,
        maxpool=False,
        grayscale=True,
        frameskip=4,
        repeat_action_probability=0.25,
        noop_max=0,
        reward_clipping=False,
        use_fire_reset=False,
    )
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(WARMUP_STEPS):
        env.step(rng.integers(UP, DOWN + 1, num_envs))  # indices into Pong's minimal set
    steps, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        env.step(rng.integers(UP, DOWN + 1, num_envs))
        steps += num_envs
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    env.close()
    return {"steps": steps, "steps_per_s": steps / wall, "steps_per_cpu_s": steps / cpu}


# -- the agent ---------------------------------------------------------------------
def _proc_cpu_seconds(pids: list[int]) -> float | None:
    """utime + stime of live processes, from /proc (Linux); None elsewhere."""
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def _pool_cpu(pool: ActorPool) -> float | None:
    """CPU seconds of this process plus the pool's live workers."""
    workers = _proc_cpu_seconds(pool.pids)
    return None if workers is None else time.process_time() + workers


def run_rollouts(pool: ActorPool, episodes: int, streams: list[dict[str, Any]]) -> dict[str, Any]:
    """``episodes`` episodes in batches of ``len(streams)`` slots, as the trainer plays them.

    ``streams`` are running ones (the warm-up made them), updated in place, so
    no ROM reload of a fresh stream (~120 ms, once per slot per run) is timed.
    """
    cpu0, wall = _pool_cpu(pool), time.perf_counter()
    busy0, wall0 = pool.busy_seconds, pool.wall_seconds
    batch_size, steps, done = len(streams), 0, 0
    while done < episodes:
        count = min(batch_size, episodes - done)
        for j, (share, stream) in enumerate(pool.play(streams[:count])):
            streams[j] = stream
            steps += share.batch.num_steps
        done += count
    wall, cpu1 = time.perf_counter() - wall, _pool_cpu(pool)
    busy, played = pool.busy_seconds - busy0, pool.wall_seconds - wall0
    out: dict[str, Any] = {
        "steps": steps,
        "steps_per_s": steps / wall,
        "idle_share": 1 - busy / (pool.num_actors * played),
    }
    if cpu0 is not None and cpu1 is not None:
        out["steps_per_cpu_s"] = steps / (cpu1 - cpu0)
    return out


def _cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its finished, reaped children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def training_paths(
    tmp: Path, num_envs: int, seed: int, batches: int, actors: str = "processes"
) -> tuple[Path, Path]:
    """The checkpoint and metrics log of the ``_train`` run with these settings (in
    its run folder)."""
    from pongxp.run_folder import Run

    run = Run(tmp / f"bench-{actors}-{num_envs}-{seed}-{batches}")
    return run.checkpoint, run.log


def _train(
    args: argparse.Namespace,
    num_envs: int,
    seed: int,
    batches: int,
    tmp: Path,
    actors: str = "processes",
    batch_steps: int = 0,
    episodes: int | None = None,
) -> Any:
    """A CPU training run of ``batches`` batches, quiet; its final committed state.

    ``actors="ray"`` needs Ray initialised by the caller (the run uses it as is).
    With ``batch_steps`` (``--batch-steps``) a run ends at a batch boundary once
    ``episodes`` episodes have ended, however many batches that takes.
    Its checkpoint and metrics log are ``training_paths(tmp, ...)``.
    """
    ckpt, _ = training_paths(tmp, num_envs, seed, batches, actors)
    cfg = TrainConfig(
        actors=actors,
        env_id=args.env_id,
        num_envs=num_envs,
        episodes=episodes or batches * args.batch_size,
        batch_size=args.batch_size,
        batch_steps=batch_steps,
        seed=seed,
        device="cpu",
        dtype=args.dtype,
        run=str(ckpt.parent),
        checkpoint_every=10**9,  # only the final save, which is outside the timed loop
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the trainer's start/done lines
        return train(cfg, quiet=True)


def run_training(args: argparse.Namespace, num_envs: int, seed: int, tmp: Path) -> dict[str, Any]:
    """Two runs from the same seed, of one batch and of ``args.batches`` batches.

    Steps/s is the longer run's steps over the trainer's elapsed time. Steps per
    CPU second is taken from the difference of the two runs (CPU of this process
    and of the worker processes, which the trainer joins before returning), so
    the start-up both runs share (imports in spawned workers, ROM loads, final
    checkpoint) drops out and the extra batches, updates included, remain.
    """
    cpu0 = _cpu_seconds()
    short = _train(args, num_envs, seed, 1, tmp)
    cpu1 = _cpu_seconds()
    full = _train(args, num_envs, seed, args.batches, tmp)
    cpu2 = _cpu_seconds()
    extra_steps = full.total_steps - short.total_steps
    return {
        "steps": full.total_steps,
        "episodes": full.episode,
        # The batches after the first: the first (the same in both runs) also
        # seeds every slot's emulator, a once-per-run ROM reload each.
        "steps_per_s": extra_steps / (full.elapsed - short.elapsed),
        "steps_per_cpu_s": extra_steps / ((cpu2 - cpu1) - (cpu1 - cpu0)),
    }


# -- the run -----------------------------------------------------------------------
def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    import scipy.sparse  # noqa: F401  (import once here, not inside the first timed update)

    rows = []
    host = init_params(np.random.default_rng(0), TrainConfig().hidden, INPUT_SIZE)
    with tempfile.TemporaryDirectory() as tmpdir:
        for n in args.num_envs:
            pool = ActorPool(args.env_id, n, args.dtype)
            pool.set_weights(host["W1"], host["W2"])
            # Warm-up (imports, caches, colours) that also starts every slot's stream.
            streams = [stream for _, stream in pool.play(fresh_streams(12345, args.batch_size))]
            runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
            for r in range(args.rounds):
                runs["bare gym"].append(run_bare(args.env_id, n, "bare gym", args.bare_seconds, r))
                runs["bare ALE"].append(run_bare(args.env_id, n, "bare ALE", args.bare_seconds, r))
                runs["rollouts"].append(run_rollouts(pool, args.episodes, streams))
                runs["training"].append(run_training(args, n, r, Path(tmpdir)))
                print(
                    f"N={n} round {r + 1}: "
                    + ", ".join(f"{m} {runs[m][-1]['steps_per_s']:.0f}/s" for m in MODES),
                    flush=True,
                )
            pool.close()
            rows.append(summarise(n, runs))
    return rows


def summarise(num_envs: int, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    row: dict[str, Any] = {"num_envs": num_envs, "rounds": runs}
    for mode, results in runs.items():
        row[mode] = {
            "steps_per_s": statistics.median(r["steps_per_s"] for r in results),
            "min": min(r["steps_per_s"] for r in results),
            "max": max(r["steps_per_s"] for r in results),
            "steps": sum(r["steps"] for r in results),
        }
        for key in ("steps_per_cpu_s", "idle_share"):
            values = [r[key] for r in results if key in r]
            if values:
                row[mode][key] = statistics.median(values)
    for ref in ("bare gym", "bare ALE"):
        for mode in ("rollouts", "training"):
            for unit in ("steps_per_s", "steps_per_cpu_s"):
                # Per round (alike conditions), then the median over rounds.
                ratios = [
                    m[unit] / b[unit]
                    for m, b in zip(runs[mode], runs[ref], strict=True)
                    if unit in m and unit in b
                ]
                if ratios:
                    row[f"{mode} / {ref} {unit}"] = statistics.median(ratios)
    return row


def measure_breakdown(env_id: str, min_steps: int) -> dict[str, float]:
    """CPU microseconds per step of each part of the actor's loop, one env.

    An instrumented copy of ``Actor._play_direct`` (same calls, same order),
    timed with the thread's CPU clock so other load on the machine does not
    count; each timer read adds ~0.5 us to the part it closes.
    """
    host = init_params(np.random.default_rng(0), TrainConfig().hidden, INPUT_SIZE)
    actor = Actor(env_id, 4321, xp)
    actor.set_weights(host["W1"], host["W2"])
    actor.play()  # warm-up
    env, clock = actor.env.unwrapped, time.thread_time_ns
    ale, frames, skip, draw = env.ale, actor._frames, env._frameskip, env.np_random.integers
    parts = dict.fromkeys(("emulator", "preprocess", "policy", "bookkeeping"), 0)
    steps = 0
    while steps < min_steps:
        ale.reset_game()
        frames.reset()
        done = False
        while not done:
            t0 = clock()
            cols, signs = frames.step()
            t1 = clock()
            up = actor._choose_up(cols, signs, False)
            t2 = clock()
            action = env._action_set[UP if up else DOWN]
            for _ in range(skip if isinstance(skip, int) else int(draw(*skip))):
                ale.act(action, 1.0)
            t3 = clock()
            done = ale.game_over(with_truncation=False) or ale.game_truncated()
            parts["preprocess"] += t1 - t0
            parts["policy"] += t2 - t1
            parts["emulator"] += t3 - t2
            parts["bookkeeping"] += clock() - t3
            steps += 1
    actor.close()
    out = {k: v / steps / 1000 for k, v in parts.items()}
    out["steps"] = steps
    return out


def measure_vector(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for n in args.num_envs:
        vec, procs = [], []
        for r in range(args.rounds):
            vec.append(run_vector(n, args.bare_seconds, r))
            procs.append(run_bare("ALE/Pong-v5", n, "vector-reference", args.bare_seconds, r))
        row = {"num_envs": n}
        for name, results in (("AtariVectorEnv", vec), ("processes", procs)):
            row[name] = {
                "steps_per_s": statistics.median(x["steps_per_s"] for x in results),
                "steps_per_cpu_s": statistics.median(x["steps_per_cpu_s"] for x in results),
            }
        print(
            f"N={n}: AtariVectorEnv {row['AtariVectorEnv']['steps_per_s']:.0f}/s "
            f"({row['AtariVectorEnv']['steps_per_cpu_s']:.0f}/CPU s), processes "
            f"{row['processes']['steps_per_s']:.0f}/s ({row['processes']['steps_per_cpu_s']:.0f}"
            "/CPU s)",
            flush=True,
        )
        rows.append(row)
    return rows


# -- output ------------------------------------------------------------------------
def verdicts(record: dict[str, Any]) -> list[str]:
    out = []
    for row in record["throughput"]:
        n = row["num_envs"]
        for ref, label in (("bare gym", "the reference"), ("bare ALE", "the stricter floor")):
            parts = []
            for unit, name in (("steps_per_s", "steps/s"), ("steps_per_cpu_s", "per CPU s")):
                ratio = row.get(f"training / {ref} {unit}")
                if ratio is not None:
                    status = "met" if ratio >= TARGET_RATIO else "NOT met"
                    parts.append(f"{name} {ratio:.2f} ({status})")
            out.append(
                f"N={n}: training / {ref} ({label}), target >= {TARGET_RATIO:.2f}: "
                + ", ".join(parts)
                + "."
            )
    return out


def _ratio(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.2f}" if key in row else ""


def markdown(record: dict[str, Any]) -> str:
    s = record["settings"]
    lines = [machine.markdown_header(record["machine"], "Throughput: emulator vs agent")]
    lines += [
        f"Env `{s['env_id']}`, {s['dtype']}, {s['rounds']} interleaved rounds per N. Bare "
        f"modes: {s['bare_seconds']} s per round. Rollouts: {s['episodes']} episodes per "
        f"round. Training: {s['batches']} batches of {s['batch_size']} episodes per round (plus "
        "a 1-batch run from the same seed for the CPU-time difference). Steps/s: median over "
        "rounds (min-max). Per CPU s: steps per CPU second of all processes doing the work. "
        "Ratios: median over rounds of each round's ratio. Idle: the rollout actors' "
        "idle share of the batches' wall time (median over rounds).",
        "",
        "| N envs | mode | steps/s | min-max | steps per CPU s "
        "| / bare gym (steps/s) | / bare gym (CPU) | / bare ALE (steps/s) | / bare ALE (CPU) "
        "| idle |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in record["throughput"]:
        for mode in MODES:
            m = row[mode]
            cpu = f"{m['steps_per_cpu_s']:,.0f}" if "steps_per_cpu_s" in m else ""
            ratios = " | ".join(
                _ratio(row, f"{mode} / {ref} {unit}")
                for ref in ("bare gym", "bare ALE")
                for unit in ("steps_per_s", "steps_per_cpu_s")
            )
            idle = f"{m['idle_share']:.1%}" if "idle_share" in m else ""
            lines.append(
                f"| {row['num_envs']} | {mode} | {m['steps_per_s']:,.0f} | "
                f"{m['min']:,.0f}-{m['max']:,.0f} | {cpu} | {ratios} | {idle} |"
            )
    lines += ["", "## Targets", ""] + [f"- {v}" for v in record["verdicts"]]
    if record.get("breakdown"):
        b = record["breakdown"]
        total = sum(v for k, v in b.items() if k != "steps")
        lines += [
            "",
            f"## Where an actor step goes (1 env, CPU time, {b['steps']:,} steps)",
            "",
            "An instrumented copy of the actor's loop: emulator = frameskip draw + "
            "`ale.act` x frameskip; preprocess = palette screen copy + `PaletteFrames.step`; "
            "policy = `step_up_probability` + sampling; bookkeeping = end-of-game checks. "
            "(Each part includes ~0.5 us of timer reads; recording the step is not timed.)",
            "",
            "| part | us per step | share |",
            "|---|---:|---:|",
        ]
        for k, v in b.items():
            if k != "steps":
                lines.append(f"| {k} | {v:.1f} | {v / total:.0%} |")
        lines.append(f"| total | {total:.1f} | |")
    if record.get("vector"):
        lines += [
            "",
            "## ale-py AtariVectorEnv vs one process per emulator (bare, random actions)",
            "",
            "Same settings for both: Pong, frameskip 4, sticky actions 0.25 (the vector env "
            "has no stochastic frameskip, so it cannot run `Pong-v0`), 210x160 grayscale "
            "frames; vector env with stack 1, no max-pool, no noop/fire resets, its own "
            "thread pool; processes each step `gym.make('ALE/Pong-v5', obs_type='grayscale')`.",
            "",
            "| N envs | AtariVectorEnv steps/s | per CPU s | processes steps/s | per CPU s |",
            "|---:|---:|---:|---:|---:|",
        ]
        for row in record["vector"]:
            v, p = row["AtariVectorEnv"], row["processes"]
            lines.append(
                f"| {row['num_envs']} | {v['steps_per_s']:,.0f} | {v['steps_per_cpu_s']:,.0f} | "
                f"{p['steps_per_s']:,.0f} | {p['steps_per_cpu_s']:,.0f} |"
            )
    lines.append("")
    return "\n".join(lines)


def check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a bad number in one line before minutes of measuring."""
    try:
        for flag, value in (
            ("--rounds", args.rounds),
            ("--episodes", args.episodes),
            ("--batch-size", args.batch_size),
            ("--breakdown-steps", args.breakdown_steps),
            *(("--num-envs", n) for n in args.num_envs),
        ):
            check_number(flag, value, 1)
        check_number(
            "--batches",
            args.batches,
            2,
            note=" (training's CPU time per step is the difference of a 1-batch run and "
            "a --batches run)",
        )
        check_number("--bare-seconds", args.bare_seconds, 0, integer=False, above=True)
    except ConfigError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default=TrainConfig().env_id)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=20, help="rollout episodes per round")
    parser.add_argument("--batch-size", type=int, default=10, help="training: episodes/update")
    parser.add_argument("--batches", type=int, default=2, help="training: batches per round")
    parser.add_argument("--bare-seconds", type=float, default=4.0)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--no-vector", action="store_true", help="skip the AtariVectorEnv part")
    parser.add_argument("--breakdown-steps", type=int, default=5000, help="per-step cost split")
    parser.add_argument("--out", type=Path, default=machine.RESULTS)
    parser.add_argument("--name", default="throughput", help="results file stem")
    args = parser.parse_args(argv)
    check_flags(parser, args)

    settings = {k: v for k, v in vars(args).items() if k not in ("out", "name")}
    record, started = machine.start_record("Throughput benchmark", settings)
    record["throughput"] = measure(args)
    record["vector"] = [] if args.no_vector else measure_vector(args)
    record["breakdown"] = measure_breakdown(args.env_id, args.breakdown_steps)
    print(
        "per-step CPU us: "
        + ", ".join(f"{k} {v:.1f}" for k, v in record["breakdown"].items() if k != "steps"),
        flush=True,
    )
    record["verdicts"] = verdicts(record)
    machine.finish_record(record, started)
    machine.write_results(record, markdown(record), args.out, args.name)


if __name__ == "__main__":
    main()
