"""What does running the actors on Ray cost in training steps/s, against worker
processes at equal numbers of actors, and what does a batch send over a network?

    python bench/bench_ray.py             # N = 1 and 2, 3 rounds; needs pongxp[ray]

Results: ``bench/results/ray.md`` and ``.json``.

For each N, in rounds that alternate the order of the two (so a busy machine
slows both alike), two CPU training runs from the same seed, which therefore
play the very same episodes: ``--actors processes`` and ``--actors ray``
(``pongxp.trainer.train`` in this process; Ray is started once, with max(N)
CPUs, and every Ray run uses it). Steps/s is a run's steps over the trainer's
own elapsed time: per batch the weights out (a ``ray.put`` for Ray), the
episodes, metrics, stacking, the update; not start-up or the final save.
Ray's overhead is 1 - ray / processes, per round, then the median.

Also measured, for the note on clusters: what one episode and one weight
broadcast weigh (pickled as Ray stores them), and an actor's per-episode time.

    python bench/bench_ray.py                        # N = 1 and 2, 3 rounds
    python bench/bench_ray.py --num-envs 1 2 4 8 16 --batch-size 16 --rounds 5
"""

from __future__ import annotations

import argparse
import logging
import pickle
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import machine
import numpy as np

from pongxp.config import INPUT_SIZE, TrainConfig
from pongxp.policy import init_params
from pongxp.workers import ActorPool, fresh_streams

TARGET_OVERHEAD = 0.10
KINDS = ("processes", "ray")
LINK_BYTES_PER_S = 125e6  # 1 Gbit/s, an ordinary cluster network, for the note


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for n in args.num_envs:
            runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
            for r in range(args.rounds):
                for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
                    state = machine.train_run(args, n, r, args.batches, Path(tmpdir), actors=kind)
                    runs[kind].append(
                        {
                            "steps": state.total_steps,
                            "steps_per_s": state.total_steps / state.elapsed,
                        }
                    )
                assert runs["ray"][-1]["steps"] == runs["processes"][-1]["steps"]  # same episodes
                print(
                    f"N={n} round {r + 1}: "
                    + ", ".join(f"{k} {runs[k][-1]['steps_per_s']:.0f}/s" for k in KINDS),
                    flush=True,
                )
            row: dict[str, Any] = {"num_envs": n, "rounds": runs}
            for kind in KINDS:
                speeds = [x["steps_per_s"] for x in runs[kind]]
                row[kind] = {"steps_per_s": statistics.median(speeds), "min": min(speeds),
                             "max": max(speeds)}  # fmt: skip
            row["overhead"] = statistics.median(
                1 - ray["steps_per_s"] / proc["steps_per_s"]
                for ray, proc in zip(runs["ray"], runs["processes"], strict=True)
            )
            rows.append(row)
    return rows


def payloads(args: argparse.Namespace) -> dict[str, Any]:
    """Bytes of one episode's reply (share, stream) and of the weights, as
    pickled (protocol 5, what Ray's object store holds), over ``args.episodes`` real
    episodes of the untrained policy at the default hidden size."""
    hidden = TrainConfig().hidden
    host = init_params(np.random.default_rng(0), hidden, INPUT_SIZE)
    w1, w2 = (host[k].astype(args.dtype) for k in ("W1", "W2"))
    pool = ActorPool(args.env_id, 1, args.dtype)
    pool.set_weights(w1, w2)
    sizes, steps, seconds = [], [], []
    for share, stream in pool.play(fresh_streams(7, args.episodes)):
        sizes.append(len(pickle.dumps((share, stream), protocol=5)))
        (stats,) = share.ended
        steps.append(stats.steps)
        seconds.append(stats.seconds)
    pool.close()
    return {
        "hidden": hidden,
        "weights_bytes": len(pickle.dumps((w1, w2), protocol=5)),
        "episode_bytes_mean": statistics.mean(sizes),
        "episode_bytes_max": max(sizes),
        "bytes_per_step": sum(sizes) / sum(steps),
        "steps_mean": statistics.mean(steps),
        "episode_seconds_mean": statistics.mean(seconds),
        "episodes": len(sizes),
    }


def verdicts(record: dict[str, Any]) -> list[str]:
    out = []
    for row in record["results"]:
        ok = row["overhead"] <= TARGET_OVERHEAD
        out.append(
            f"N={row['num_envs']}: Ray overhead {row['overhead']:+.1%} of training steps/s, "
            f"target <= {TARGET_OVERHEAD:.0%}: {'met' if ok else 'NOT met'}."
        )
    return out


def scaling_note(record: dict[str, Any]) -> list[str]:
    """How the figures carry over to a cluster, in numbers from this run."""
    p, s = record["payloads"], record["settings"]
    link_ms = 1000 / LINK_BYTES_PER_S
    episode_ms = p["episode_seconds_mean"] * 1000
    batch_bytes = s["batch_size"] * p["episode_bytes_mean"]
    return [
        "## Scaling to a cluster",
        "",
        f"- **One episode back** (HostBatch + stats + stream, pickled): "
        f"{p['episode_bytes_mean']:,.0f} bytes on average, {p['episode_bytes_max']:,} at most, "
        f"{p['bytes_per_step']:.0f} bytes a step, over {p['episodes']} episodes of the untrained "
        f"policy ({p['steps_mean']:,.0f} steps, {episode_ms:,.0f} ms of one core each). At "
        f"1 Gbit/s that is {p['episode_bytes_mean'] * link_ms:.1f} ms, "
        f"{p['episode_bytes_mean'] * link_ms / episode_ms:.1%} of the episode's own time; "
        "longer (better) episodes grow both alike.",
        f"- **Weights out, once a batch** (W1 + W2, float32, H = {p['hidden']}): "
        f"{p['weights_bytes']:,} bytes in one `ray.put`; each node pulls one copy into its "
        f"object store ({p['weights_bytes'] * link_ms:.0f} ms at 1 Gbit/s from the driver's "
        "node), and its actors read it from shared memory. With k nodes the driver's node "
        f"sends up to k x {p['weights_bytes'] / 1e6:.1f} MB a batch.",
        f"- **Object store**: per batch, the weights plus the batch's episodes until the "
        f"update: {p['weights_bytes'] / 1e6:.1f} MB + {s['batch_size']} x "
        f"{p['episode_bytes_mean'] / 1e3:,.0f} KB = "
        f"{(p['weights_bytes'] + batch_bytes) / 1e6:.1f} MB here; megabytes, not a limit.",
        f"- **Parallelism is capped by --batch-size**: a batch has batch_size episodes and "
        "the next batch needs the weights its update makes, so at most batch_size actors "
        f"are busy (here {s['batch_size']}), and a batch lasts as long as its longest "
        "episode. Past that, more nodes add nothing; a larger --batch-size (more "
        "episodes per update, a different learning curve) is what uses them.",
        "- **The update stays on the driver**, serial between batches (~120 ms on one "
        "core for 10k steps, `update.md`), as does the weight broadcast; both are "
        "per batch, so they weigh less the more episodes a batch has.",
        "",
    ]


def markdown(record: dict[str, Any]) -> str:
    s = record["settings"]
    lines = [machine.markdown_header(record["machine"], "Ray actors vs worker processes")]
    lines += [
        f"Env `{s['env_id']}`, {s['dtype']}, CPU update, hidden {TrainConfig().hidden}; per "
        f"N and round, two training runs from the same seed (the same episodes), "
        f"{s['batches']} batches of {s['batch_size']} episodes, in alternating order; "
        f"{s['rounds']} rounds. Steps/s: the trainer's steps / its elapsed time, median "
        "over rounds (min-max). Overhead: 1 - ray / processes per round, median. Ray: one "
        "local instance for all runs (start-up not timed, as for processes).",
        "",
        f"**Load**: {record['load_note']} Figures are noisy under load; compare the two "
        "columns of a row, measured side by side, rather than rows or files.",
        "",
        "| N actors | processes steps/s | min-max | ray steps/s | min-max | Ray overhead |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in record["results"]:
        p, r = row["processes"], row["ray"]
        lines.append(
            f"| {row['num_envs']} | {p['steps_per_s']:,.0f} | {p['min']:,.0f}-{p['max']:,.0f} "
            f"| {r['steps_per_s']:,.0f} | {r['min']:,.0f}-{r['max']:,.0f} "
            f"| {row['overhead']:+.1%} |"
        )
    lines += [
        "",
        "With N = 1, processes play in the trainer's own process (no transfer at all) "
        "while Ray's one actor is another process: that row is Ray's whole cost.",
        "",
        "## Target",
        "",
    ]
    lines += [f"- {v}" for v in record["verdicts"]]
    lines += ["", *scaling_note(record)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default=TrainConfig().env_id)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4, help="episodes per update")
    parser.add_argument("--batches", type=int, default=2, help="batches per run")
    parser.add_argument("--episodes", type=int, default=6, help="episodes for the payload sizes")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--out", type=Path, default=machine.RESULTS)
    parser.add_argument("--name", default="ray", help="results file stem")
    parser.add_argument("--note", default="", help="what else ran on the machine, for the .md")
    args = parser.parse_args(argv)

    import ray  # pongxp[ray]

    info = machine.describe()
    info["versions"]["ray"] = ray.__version__
    print(machine.markdown_header(info, "Ray benchmark"), flush=True)
    record: dict[str, Any] = {
        "machine": info,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "name")},
    }
    started = time.perf_counter()
    ray.init(
        num_cpus=max(args.num_envs),
        include_dashboard=False,
        log_to_driver=False,  # the actors' emulator banners
        logging_level=logging.ERROR,
    )
    try:
        record["results"] = measure(args)
    finally:
        ray.shutdown()
    record["payloads"] = payloads(args)
    record["verdicts"] = verdicts(record)
    machine.finish_record(record, started)
    start_load, end_load = info["load_average_at_start"], info["load_average_at_end"]
    record["load_note"] = (
        f"load average {start_load} at the start and {end_load} at the end, on "
        f"{info['cores']} cores. {args.note}"
    ).strip()
    machine.write_results(record, markdown(record), args.out, args.name)


if __name__ == "__main__":
    main()
