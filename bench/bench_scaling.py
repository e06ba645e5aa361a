"""Where does a training run's time go on N cores, with whole-episode batches or
batches of steps, the update on the CPU or a GPU, and how long does it take to win?

    python bench/bench_scaling.py                 # measure, model, check (~9 min, 2 cores)
    python bench/bench_scaling.py --no-check      # the model only, no training runs

Results: ``bench/results/scaling.md``, ``.json`` and ``.png`` (``--name`` for another
stem). Every modelled figure is labelled "modelled"; what the results mean is in
bench/README.md.

The model is ``scaling_model.py`` (it cuts shares with ``slot_share.share_ends``,
the trainer's own rule); the costs it is given, and the training runs it is
checked against at 1 and 2 actors, are ``scaling_measure.py``; the tables and the
figure ``scaling_report.py``. The episodes come from a learning log (``--log``,
``pretrained/pong-v0.jsonl`` by default), the games of batches of steps from
``--steps-log`` once that run reached the level, else from ``--steps-assumed-log``
(an assumption, said so in the results); the GPU rows from any committed
``results/update*.json`` with GPU rows.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import machine
import numpy as np
import scaling_measure as measure
import scaling_report as report
from scaling_model import (
    Costs,
    PointShapes,
    RunLog,
    Setup,
    UpdateRow,
    gpu_rows,
    model,
    model_steps,
    step_slots,
)

from pongxp.config import ConfigError, TrainConfig, check_number
from pongxp.slot_share import slot_quota

CORES = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_LOG = machine.ROOT / "pretrained" / "pong-v0.jsonl"


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
            *(("--update-lengths", n) for n in args.update_lengths),
        ):
            check_number(flag, value, 1)
        check_number("--check-batches", args.check_batches, 2)
        check_number("--level", args.level, -21, 21, integer=False)
        if args.actor_speed is not None:
            check_number("--actor-speed", args.actor_speed, 1, integer=False)
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
            "log": machine.shown_path(args.steps_log),
            "episodes": len(log.steps),
            "total_steps": int(log.total_steps[-1]),
            "running_reward": float(log.running[-1]),
            "best_running_reward": float(log.running.max()),
        }
        episodes = log.episodes_to(args.level)
        if episodes:
            source.update(games=machine.shown_path(args.steps_log), steps_from="measured")
            steps = float(log.total_steps[episodes - 1])
            return log, episodes, args.steps_to_level or steps, source
    log = RunLog.read(args.steps_assumed_log)
    episodes = log.episodes_to(args.level)
    if episodes == 0:
        parser.error(
            f"--steps-assumed-log {args.steps_assumed_log} never reaches a running reward "
            f"of {args.level:g}"
        )
    source.update(games=machine.shown_path(args.steps_assumed_log), steps_from="assumed")
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
    parser.add_argument(
        "--actor-speed",
        type=float,
        help="steps/s of one actor alone on an idle core of the machine to model "
        "(default: results/throughput.json's)",
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
    speed, idle_training, speed_source = measure.idle_speeds(machine.RESULTS)
    if args.actor_speed is not None:  # another machine's actors, measured there
        speed, speed_source = args.actor_speed, "--actor-speed (measured on the machine modelled)"
    batches = sorted({max(args.min_batch, n) for n in args.cores})
    cpu_rows = measure.measure_cpu_update(
        [(b, length) for b in batches for length in args.update_lengths], args.repeats, args.dtype
    )
    all_cores = [*args.cores, *(k * c for k, c in clusters), *args.check_cores]
    slots = sorted({step_slots(n, args.min_batch) for n in all_cores})
    quotas = {c: slot_quota(args.batch_steps, c) or 0 for c in slots}
    # Shares run from the quota to about half as long again (the point under way).
    step_rows = measure.measure_cpu_update(
        [(c, quotas[c] * k // 4) for c in slots for k in (4, 5, 6)],
        args.repeats,
        args.dtype,
    )
    costs = Costs(
        step_s=1 / speed,
        # Milliseconds each: many repeats, the best of which is the least disturbed.
        weights_s=measure.measure_weights_send(env_id, args.dtype, 20),
        return_s_per_step=measure.measure_episode_return(5000, 20),
        stream=measure.measure_stream(env_id, args.dtype, 30),
    )
    speed_here = measure.measure_actor_speed(env_id, args.dtype, 5)
    print(f"costs: {costs}; one actor here: {speed_here:,.0f} steps/s", flush=True)
    setups, ray_source = [], {}
    for nodes, node_cores in clusters:
        ray, ray_source = measure.ray_costs(machine.RESULTS, costs.step_s, costs.stream, nodes)
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
            "log": machine.shown_path(args.log),
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
                "points": machine.shown_path(args.points),
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
    checking = not args.no_check and args.check_cores
    record["check"] = (
        measure.check(
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
        measure.check_steps(
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
    record["verdicts"] = report.verdicts(record)
    machine.finish_record(record, started)
    machine.write_results(record, report.markdown(record), args.out, args.name)
    report.figure(record, args.out / f"{args.name}.png")
    print(f"wrote {args.out / (args.name + '.png')}")


if __name__ == "__main__":
    main()
