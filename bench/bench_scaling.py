"""Where does a training run's time go on N cores, with whole-episode batches or
batches of steps, the update on the CPU or a GPU, and how long does it take to win?

    python bench/bench_scaling.py                 # measure, model, check (~9 min, 2 cores)
    python bench/bench_scaling.py --no-check      # the model only, no training runs

Results: ``bench/results/scaling.md``, ``.json`` and ``.png`` (``--name`` for another
stem). The model is ``scaling_model.py``, its measured costs and the check against
training ``scaling_measure.py``, the tables and figure ``scaling_report.py``.
Whole episodes replay ``--log``'s games; batches of steps ``--steps-log``'s once
that run reached the level, else ``--log``'s (its steps to the level assumed).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import machine
import scaling_measure as measure
import scaling_report as report
from scaling_model import (
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


def parse_cluster(text: str) -> tuple[int, int]:
    """``KxC`` as (K nodes, C cores each), both positive.

    Raises:
        ConfigError: not of that form.
    """
    nodes, _, cores = text.partition("x")
    if not (nodes.isdigit() and cores.isdigit() and int(nodes) > 0 and int(cores) > 0):
        raise ConfigError(f"--ray-clusters {text!r}: give K nodes x C cores, e.g. 4x16")
    return int(nodes), int(cores)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The flags, refused in one line (a bad number, a missing file) before any measuring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, options in (
        ("--cores", dict(type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])),
        ("--min-batch", dict(type=int, default=TrainConfig().batch_size, help="batch = "
         "max(this, cores); slots: the smallest multiple of the cores not below it")),
        ("--log", dict(type=Path, default=machine.ROOT / "pretrained" / "pong-v0.jsonl",
                       help="the whole-episode run to model")),
        ("--steps-log", dict(type=Path, help="a --batch-steps run: its games, steps to the level")),
        ("--level", dict(type=float, default=0.0, help="running reward to reach")),
        ("--resamples", dict(type=int, default=20)),
        ("--window", dict(type=int, default=500, help="episodes to resample from")),
        ("--update-lengths", dict(type=int, nargs="+", default=[1000, 4000, 8000],
                                  help="episode lengths (steps) of the timed CPU updates")),
        ("--batch-steps", dict(type=int, default=34_000, help="S of the batch-of-steps model")),
        ("--points", dict(type=Path, default=machine.RESULTS / "points.json",
                          help="real games' point lengths (bench_points.py)")),
        ("--ray-clusters", dict(nargs="*", default=["2x8", "4x16"], help="K nodes x C cores")),
        ("--actor-speed", dict(type=float, help="one actor's steps/s alone on an idle core of "
                               "the machine modelled (default: results/throughput.json's)")),
        ("--repeats", dict(type=int, default=3, help="timed calls per measurement")),
        ("--check-batches", dict(type=int, default=12, help="batches of a whole-episode check")),
        ("--check-steps-episodes", dict(type=int, default=300,
                                        help="episodes of a batch-of-steps check")),
        ("--check-cores", dict(type=int, nargs="*", default=[1, 2])),
        ("--no-check", dict(action="store_true", help="skip the training runs")),
        ("--dtype", dict(default="float32", choices=["float32", "float64"])),
        ("--seed", dict(type=int, default=0, help="of the resampling")),
        ("--out", dict(type=Path, default=machine.RESULTS)),
        ("--name", dict(default="scaling", help="results file stem")),
    ):  # fmt: skip
        parser.add_argument(flag, **options)
    args = parser.parse_args(argv)
    try:
        for flag in ("min_batch", "resamples", "window", "repeats", "batch_steps",
                     "check_steps_episodes"):  # fmt: skip
            check_number("--" + flag.replace("_", "-"), getattr(args, flag), 1)
        for n in args.cores:
            check_number("--cores", n, 1)
        for n in args.update_lengths:
            check_number("--update-lengths", n, 1)
        check_number("--check-batches", args.check_batches, 2)
        check_number("--level", args.level, -21, 21, integer=False)
        if args.actor_speed is not None:
            check_number("--actor-speed", args.actor_speed, 1, integer=False)
        for text in args.ray_clusters:
            parse_cluster(text)
    except ConfigError as exc:
        parser.error(str(exc))
    for flag, path in (("--log", args.log), ("--steps-log", args.steps_log)):
        if path is not None and not path.is_file():
            parser.error(f"{flag} {path} is not a file; give a training run's metrics log")
    if not args.points.is_file():
        parser.error(f"--points {args.points} is not a file; make it with bench/bench_points.py")
    if RunLog.read(args.log).episodes_to(args.level) == 0:
        parser.error(f"--log {args.log} never reaches a running reward of {args.level:g}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    log = RunLog.read(args.log)
    episodes = log.episodes_to(args.level)
    steps_log, steps_episodes, steps_from = log, episodes, "assumed: the whole-episode run's"
    if args.steps_log is not None and RunLog.read(args.steps_log).episodes_to(args.level):
        steps_log, steps_from = RunLog.read(args.steps_log), "measured: that run's"
        steps_episodes = steps_log.episodes_to(args.level)
    steps_to_level = float(steps_log.total_steps[steps_episodes - 1])
    clusters = [parse_cluster(text) for text in args.ray_clusters]

    info = machine.describe()
    print(machine.markdown_header(info, "Scaling benchmark"), flush=True)
    started = time.perf_counter()
    env_id = TrainConfig().env_id
    speed, speed_source = measure.idle_speed(machine.RESULTS)
    if args.actor_speed is not None:  # another machine's actor, measured there
        speed, speed_source = args.actor_speed, "--actor-speed, measured on the machine modelled"
    batches = sorted({max(args.min_batch, n) for n in args.cores})
    cpu_rows = measure.measure_cpu_update(
        [(b, length) for b in batches for length in args.update_lengths], args.repeats, args.dtype
    )
    all_cores = [*args.cores, *(k * c for k, c in clusters), *args.check_cores]
    slots = sorted({step_slots(n, args.min_batch) for n in all_cores})
    quotas = {c: slot_quota(args.batch_steps, c) or 0 for c in slots}
    # Shares run from the quota to about half as long again (the point under way).
    step_rows = measure.measure_cpu_update(
        [(c, quotas[c] * k // 4) for c in slots for k in (4, 5, 6)], args.repeats, args.dtype
    )
    costs = measure.measure_costs(env_id, args.dtype, 1 / speed)
    print(f"costs: {costs}", flush=True)
    setups = [
        Setup(k * c, measure.ray_costs(machine.RESULTS, costs.step_s, costs.stream, k),
              f"Ray, {k} nodes x {c} cores")
        for k, c in clusters
    ]  # fmt: skip
    gpu, gpu_sources = gpu_rows(machine.RESULTS, args.dtype)
    shown = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    record: dict[str, Any] = {
        "machine": info,
        "settings": {k: v for k, v in shown.items() if k not in ("out", "name")},
        "inputs": {
            "log": machine.shown_path(args.log),
            "level": args.level,
            "episodes_to_level": episodes,
            "steps_to_level": int(log.steps[:episodes].sum()),
            "steps_games": machine.shown_path(args.steps_log or args.log),
            "steps_from": steps_from,
            "steps_to_level_steps": steps_to_level,
            "points": machine.shown_path(args.points),
            "speed_source": speed_source,
            "costs": asdict(costs),
            "cpu_update": [vars(r) for r in cpu_rows],
            "cpu_update_steps": [vars(r) for r in step_rows],
            "gpu_update": [vars(r) for r in gpu],
            "gpu_sources": gpu_sources,
        },
    }
    updates = {"cpu": cpu_rows, "gpu": gpu, "none": [UpdateRow(args.min_batch, 1, 0.0)]}
    record["model"] = model(log, episodes, args.cores, args.min_batch, costs, updates,
                            args.resamples, args.window, args.seed, setups)  # fmt: skip
    record["model_steps"] = model_steps(
        steps_log, steps_episodes, steps_to_level, [Setup(n, costs) for n in args.cores] + setups,
        args.min_batch, args.batch_steps, PointShapes.read(args.points),
        {**updates, "cpu": step_rows}, args.resamples, args.window, args.seed,
    )  # fmt: skip
    record["check"] = []
    if not args.no_check and args.check_cores:
        record["check"] = measure.check(
            args.check_cores, env_id, args.dtype, costs, cpu_rows, args.min_batch,
            batches=args.check_batches,
        ) + measure.check(
            args.check_cores, env_id, args.dtype, costs, step_rows, args.min_batch,
            batch_steps=args.batch_steps, episodes=args.check_steps_episodes,
        )  # fmt: skip
    record["verdicts"] = [
        f"modelled, {r['cores']} cores ({r['actors']}), {r['mode']}, CPU update: "
        f"{r['steps_per_s']:,.0f} steps/s, idle {r['idle_in_rollouts']:.1%}, "
        f"{r['hours_to_level'] * 60:.1f} min to {args.level:g}"
        for r in record["model"] + record["model_steps"]
        if r["update_on"] == "cpu"
    ]
    machine.finish_record(record, started)
    machine.write_results(record, report.markdown(record), args.out, args.name)
    report.figure(record, args.out / f"{args.name}.png")
    print(f"wrote {args.out / (args.name + '.png')}")


if __name__ == "__main__":
    main()
