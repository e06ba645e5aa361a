"""How long does one policy-gradient update take per batch on NumPy (CPU) and CuPy
(GPU), and how much memory does it need?

    python bench/bench_update.py          # CPU rows, and GPU rows where CuPy has a GPU

Results: ``bench/results/update.md`` and ``.json`` (``--name update-gpu`` on a
GPU machine, which ``bench_scaling.py`` then reads).

One "update" is what the trainer does once per batch: stack the episodes, move
the batch to the device in one transfer, recompute the forward pass, returns,
backward pass and RMSProp there, check that weights, gradients and cache are
finite, and bring the new weights (W1, W2) back to the host. The transfer alone
(stack + pack + copy + CSR build) is timed too.

Batches are synthetic: E episodes of T/E steps (E = 10, 32 and 64 by
default: bigger machines need bigger batches), each step with a binomial
number of non-zero pixels (mean 26, at most 66, as measured on real Pong frame
differences), random signs, actions and a point every ~60 steps. The update's
cost depends on those counts, not on which pixels they are.

Timing: CPU rows use ``time.perf_counter``; GPU rows use
``cupyx.profiler.benchmark`` (CUDA events around each call). Both report the
median of the repeats after warm-up calls. Without a usable GPU the GPU rows
say so and are left empty.

    python bench/bench_update.py                      # full run, writes bench/results/
    python bench/bench_update.py --steps 1000 10000   # smaller
    python bench/bench_update.py --episodes 64 --dtypes float32 --no-memory  # one batch size
    python bench/bench_update.py --dense-max-steps 100000 --memory-dense-dtypes float32 float64
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import machine
import numpy as np

from pongxp import backend as backend_mod
from pongxp.batch import HostBatch, stack
from pongxp.config import INPUT_SIZE, TrainConfig
from pongxp.optim import zeros_like_params
from pongxp.policy import init_params
from pongxp.update import all_finite, apply_update

NNZ_MAX, NNZ_MEAN = 66, 26  # per-step non-zeros of real Pong frame differences
EPISODES_PER_BATCH = 10
TARGET_GPU_SPEEDUP, TARGET_STEPS = 30.0, 50_000
TARGET_RSS_MB = 1024.0


# -- the batch ----------------------------------------------------------------
def synthetic_episode(num_steps: int, rng: np.random.Generator) -> HostBatch:
    """One episode of ``num_steps`` steps shaped like real Pong rollouts.

    Returns:
        HostBatch with (num_steps,) ups/rewards, CSR frames whose rows hold
        Binomial(66, 26/66) distinct, ascending columns with random signs.
    """
    counts = rng.binomial(NNZ_MAX, NNZ_MEAN / NNZ_MAX, size=num_steps)
    indptr = np.zeros(num_steps + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    nnz = int(indptr[-1])
    rows = np.repeat(np.arange(num_steps), counts)
    # Distinct columns in a row: a random start plus multiples of 97 (coprime
    # to 6400, and 66 * 97 < 6400), then sorted within the row as rollouts are.
    within = np.arange(nnz) - np.repeat(indptr[:-1], counts)
    cols = (np.repeat(rng.integers(0, INPUT_SIZE, num_steps), counts) + 97 * within) % INPUT_SIZE
    cols = np.sort(rows * INPUT_SIZE + cols) % INPUT_SIZE
    rewards = np.where(rng.random(num_steps) < 1 / 60, rng.choice([-1, 1], num_steps), 0)
    rewards[-1] = -1  # an episode ends on a point
    return HostBatch(
        indptr=indptr.astype(np.int32),
        cols=cols.astype(np.int32),
        signs=rng.choice(np.array([-1, 1], dtype=np.int8), nnz),
        ups=rng.integers(0, 2, num_steps, dtype=np.uint8),
        rewards=rewards.astype(np.int8),
        lengths=np.array([num_steps], dtype=np.int64),
    )


def synthetic_batch(
    num_steps: int, seed: int = 0, episodes: int = EPISODES_PER_BATCH
) -> list[HostBatch]:
    """``episodes`` episodes (fewer when T is tiny) with ``num_steps`` steps in all."""
    rng = np.random.default_rng(seed)
    episodes = min(episodes, num_steps)
    sizes = [
        num_steps // episodes + (1 if i < num_steps % episodes else 0) for i in range(episodes)
    ]
    return [synthetic_episode(n, rng) for n in sizes]


# -- what is timed -------------------------------------------------------------
class UpdateCase:
    """Weights, RMSProp cache and a batch for one backend; ``update()`` as the trainer does it."""

    def __init__(self, backend: backend_mod.Backend, episodes: list[HostBatch]) -> None:
        self.backend = backend
        self.episodes = episodes
        self.cfg = TrainConfig()
        host = init_params(np.random.default_rng(0), self.cfg.hidden, INPUT_SIZE)
        self.params = {k: backend.asarray(v) for k, v in host.items()}
        self.cache = zeros_like_params(self.params, backend.xp)

    def transfer(self) -> Any:
        """Stack the episodes and move the batch to the device (one transfer)."""
        return self.backend.batch_to_device(stack(self.episodes), INPUT_SIZE)

    def update(self) -> tuple[np.ndarray, np.ndarray]:
        """One full update; returns the new host weights (W1 (H, D), W2 (H,))."""
        b, cfg, xp = self.backend, self.cfg, self.backend.xp
        batch = self.transfer()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            params, cache, grads = apply_update(
                self.params, self.cache, batch, cfg.gamma, cfg.learning_rate, cfg.decay_rate, xp
            )
        if not (all_finite(grads, xp) and all_finite(params, xp) and all_finite(cache, xp)):
            raise RuntimeError("non-finite update in the benchmark")
        return b.to_host(params["W1"]), b.to_host(params["W2"])


def time_cpu(fn: Callable[[], Any], repeats: int, warmup: int, budget_s: float) -> list[float]:
    """Seconds per call, wall clock, after ``warmup`` calls; stops early past ``budget_s``
    (at least 3 timed calls)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def time_gpu(fn: Callable[[], Any], repeats: int, warmup: int, budget_s: float) -> list[float]:
    """Seconds per call on the GPU's clock: CUDA events around each call, via
    ``cupyx.profiler.benchmark``, which synchronises after every call. Host work
    inside ``fn`` (packing, synchronous copies) falls between the events too."""
    from cupyx.profiler import benchmark

    result = benchmark(fn, n_repeat=repeats, n_warmup=warmup, max_duration=budget_s)
    return [float(t) for t in np.asarray(result.gpu_times)[0]]


# -- the run --------------------------------------------------------------------
def dense_bytes(num_steps: int, dtype: str) -> int:
    return num_steps * INPUT_SIZE * np.dtype(dtype).itemsize


def measure(args: argparse.Namespace, gpu: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    devices = ["cpu", "gpu"]
    for device in devices:
        if device == "gpu" and not gpu["available"]:
            rows.extend(
                {
                    "device": "gpu",
                    "frames": "-",
                    "dtype": dtype,
                    "steps": None,
                    "status": f"no GPU here ({gpu['reason']})",
                }
                for dtype in args.dtypes
            )
            continue
        timer = time_gpu if device == "gpu" else time_cpu
        repeats = args.gpu_repeats if device == "gpu" else args.repeats
        warmup = args.gpu_warmup if device == "gpu" else args.warmup
        dense_max = args.gpu_dense_max_steps if device == "gpu" else args.dense_max_steps
        for steps, batch_episodes in itertools.product(args.steps, args.episodes):
            episodes = synthetic_batch(steps, episodes=batch_episodes)
            nnz = sum(int(e.cols.shape[0]) for e in episodes)
            for sparse in (True, False):
                for dtype in args.dtypes:
                    row: dict[str, Any] = {
                        "device": device,
                        "frames": "sparse CSR" if sparse else "dense",
                        "dtype": dtype,
                        "steps": steps,
                        "episodes": len(episodes),
                        "nnz": nnz,
                        "transfer_bytes": 4 * (4 * steps + 1 + 2 * nnz),
                    }
                    rows.append(row)
                    if not sparse and steps > dense_max:
                        gb = dense_bytes(steps, dtype) / 1e9
                        row["status"] = (
                            f"skipped: dense X alone is {gb:.1f} GB "
                            f"(--{'gpu-' if device == 'gpu' else ''}dense-max-steps)"
                        )
                        continue
                    try:
                        backend = backend_mod.select(device, dtype, sparse=sparse)
                        case = UpdateCase(backend, episodes)
                        update = timer(case.update, repeats, warmup, args.budget)
                        transfer = timer(case.transfer, repeats, warmup, args.budget / 4)
                    except Exception as exc:  # e.g. out of device memory: report, go on
                        first = (str(exc).splitlines() or [""])[0][:200]
                        row["status"] = f"error: {type(exc).__name__}: {first}"
                        print(
                            f"{device} {row['frames']} {dtype} T={steps} "
                            f"E={row['episodes']}: {row['status']}"
                        )
                        continue
                    row.update(
                        status="ok",
                        update_s=statistics.median(update),
                        update_all_s=update,
                        transfer_s=statistics.median(transfer),
                        transfer_all_s=transfer,
                    )
                    print(
                        f"{device} {row['frames']:10s} {dtype} T={steps:>6} "
                        f"E={row['episodes']:>2}: "
                        f"update {row['update_s'] * 1e3:9.2f} ms, "
                        f"transfer {row['transfer_s'] * 1e3:8.2f} ms (median of {len(update)})",
                        flush=True,
                    )
                    del case, backend
                    if device == "gpu":  # hand cached blocks back before the next (bigger) case
                        import cupy

                        cupy.get_default_memory_pool().free_all_blocks()
    add_speedups(rows)
    return rows


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """Each row's speed against the best CPU update for the same T and episodes
    (any dtype, any frames)."""
    best: dict[tuple[int, int], float] = {}

    def key(r: dict[str, Any]) -> tuple[int, int]:
        return r["steps"], r.get("episodes", EPISODES_PER_BATCH)

    for r in rows:
        if r["device"] == "cpu" and r.get("status") == "ok":
            best[key(r)] = min(best.get(key(r), float("inf")), r["update_s"])
    for r in rows:
        if r.get("status") == "ok" and key(r) in best:
            r["speedup_vs_best_cpu"] = best[key(r)] / r["update_s"]


# -- peak memory (target: <= 1 GB RSS for 10 episodes of 10k steps) ------------------
def memory_child(mode: str, dtype: str, steps: int) -> None:
    """In a fresh process: peak RSS of an update on a synthetic batch; prints JSON.

    Peaks come from /proc/self/status (VmHWM): ``ru_maxrss`` would not do, as
    Linux carries it over from the parent through fork + exec.
    """
    episodes = synthetic_batch(steps)
    backend = backend_mod.select("cpu", dtype, sparse=mode == "sparse")
    case = UpdateCase(backend, episodes)
    before, peak_before = _status_mb("VmRSS"), _status_mb("VmHWM")
    reset = _reset_peak()  # so that VmHWM afterwards covers the update alone
    case.update()
    peak_update = _status_mb("VmHWM")
    peaks = [p for p in (peak_before, peak_update) if p is not None]
    out = {
        "frames": mode,
        "dtype": dtype,
        "steps": steps,
        "episodes": len(episodes),
        "rss_before_update_mb": before,
        "peak_rss_mb": max(peaks) if peaks else None,
        "peak_rss_during_update_mb": peak_update if reset else None,
    }
    print(json.dumps(out))


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure_memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    cases = [("sparse", d) for d in args.dtypes] + [("dense", d) for d in args.memory_dense_dtypes]
    rows = []
    for mode, dtype in cases:
        cmd = [sys.executable, __file__, "--memory-child", mode, dtype, str(args.memory_steps)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=machine.ROOT)
        if proc.returncode != 0:
            rows.append({"frames": mode, "dtype": dtype, "status": proc.stderr.strip()[-300:]})
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["status"] = "ok"
        rows.append(row)
        print(
            f"memory {mode:6s} {dtype}: peak RSS {row['peak_rss_mb']:.0f} MB "
            f"(before update {row['rss_before_update_mb']:.0f} MB)",
            flush=True,
        )
    return rows


# -- output ----------------------------------------------------------------------
def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:,.1f}"


def markdown(record: dict[str, Any]) -> str:
    lines = [
        machine.markdown_header(record["machine"], "Update benchmark: NumPy (CPU) vs CuPy (GPU)")
    ]
    lines += [
        "One update = stack the episodes, one transfer to the device, forward + returns + "
        "backward + RMSProp there, finiteness checks, new W1/W2 back to the host (what the "
        "trainer does per batch). Transfer = stack + pack + copy + CSR build alone. "
        "Synthetic batches of E episodes of T/E steps each, Binomial("
        f"{NNZ_MAX}, "
        f"{NNZ_MEAN}/{NNZ_MAX}) non-zeros per step. Median of repeats after "
        f"{record['settings']['warmup']} (CPU) / {record['settings']['gpu_warmup']} (GPU) "
        "warm-up call(s); GPU times from CUDA events "
        "(`cupyx.profiler.benchmark`). Speed-up: best CPU update for the same T and E / "
        "this row.",
        "",
        "| device | frames | dtype | T (steps) | E (episodes) | update (ms) "
        "| update min-max (ms) | transfer alone (ms) | per 10k steps (ms) "
        "| speed-up vs best CPU | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in record["update"]:
        ok = r.get("status") == "ok"
        steps = r.get("steps")
        per10k = r["update_s"] * 1e4 / steps if ok else None
        speed = f"{r['speedup_vs_best_cpu']:.1f}x" if ok and "speedup_vs_best_cpu" in r else ""
        note = "" if ok else r["status"]
        spread = f"{_ms(min(r['update_all_s']))}-{_ms(max(r['update_all_s']))}" if ok else ""
        lines.append(
            f"| {r['device']} | {r['frames']} | {r['dtype']} | "
            f"{steps if steps is not None else 'all'} | {r.get('episodes', 'all')} | "
            f"{_ms(r.get('update_s'))} | {spread} | "
            f"{_ms(r.get('transfer_s'))} | {_ms(per10k)} | {speed} | {note} |"
        )
    lines += ["", "## Targets", ""]
    lines += [f"- {line}" for line in record["verdicts"]]
    if record["memory"]:
        lines += [
            "",
            f"## Peak memory of one update (fresh process, synthetic batch of "
            f"{record['settings']['memory_steps']:,} steps)",
            "",
            "| frames | dtype | RSS before update (MB) | peak RSS, whole process (MB) "
            "| peak RSS during update (MB) | note |",
            "|---|---|---:|---:|---:|---|",
        ]
        for m in record["memory"]:
            if m.get("status") != "ok":
                lines.append(f"| {m['frames']} | {m['dtype']} | | | | {m['status']} |")
                continue
            during = m.get("peak_rss_during_update_mb")
            lines.append(
                f"| {m['frames']} | {m['dtype']} | {m['rss_before_update_mb']:.0f} | "
                f"{m['peak_rss_mb']:.0f} | {'' if during is None else f'{during:.0f}'} | |"
            )
    lines.append("")
    return "\n".join(lines)


def verdicts(record: dict[str, Any]) -> list[str]:
    out = []
    rows = [r for r in record["update"] if r.get("status") == "ok"]
    at = [
        r
        for r in rows
        if r["steps"] == TARGET_STEPS
        and r.get("episodes", EPISODES_PER_BATCH) == EPISODES_PER_BATCH
    ]
    cpu = [r for r in at if r["device"] == "cpu"]
    gpu = [r for r in at if r["device"] == "gpu"]
    if cpu:
        best = min(cpu, key=lambda r: r["update_s"])
        out.append(
            f"Best CPU update for T = {TARGET_STEPS:,}: {best['frames']} {best['dtype']}, "
            f"{best['update_s'] * 1e3:,.0f} ms."
        )
    if gpu:
        for r in gpu:
            s = r["speedup_vs_best_cpu"]
            status = "met" if s >= TARGET_GPU_SPEEDUP else "NOT met"
            out.append(
                f"GPU {r['frames']} {r['dtype']} at T = {TARGET_STEPS:,}: {s:.1f}x the best CPU "
                f"update (target >= {TARGET_GPU_SPEEDUP:.0f}x): {status}."
            )
    elif not record["machine"]["gpu"]["available"]:
        out.append(
            f"GPU >= {TARGET_GPU_SPEEDUP:.0f}x at T = {TARGET_STEPS:,}: still to be measured; no "
            "GPU here (rows above say why). Run this script on a CUDA machine, which times its "
            "own CPU rows in the same run."
        )
    for m in record["memory"]:
        if m.get("status") == "ok":
            status = "met" if m["peak_rss_mb"] <= TARGET_RSS_MB else "NOT met"
            what = "training's path" if m["frames"] == "sparse" else "plain dense path, contrast"
            out.append(
                f"Peak RSS, {m['frames']} {m['dtype']} ({what}), {m['steps']:,} steps: "
                f"{m['peak_rss_mb']:.0f} MB (target <= {TARGET_RSS_MB:.0f} MB): {status}."
            )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 10_000, 50_000, 100_000])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument(
        "--episodes",
        type=int,
        nargs="+",
        default=[EPISODES_PER_BATCH, 32, 64],
        help="episodes per batch (the T steps are split among them)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed CPU calls per case")
    parser.add_argument("--gpu-repeats", type=int, default=20, help="timed GPU calls per case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed CPU calls first")
    parser.add_argument(
        "--gpu-warmup",
        type=int,
        default=3,
        help="untimed GPU calls first (CUDA context, cuSPARSE handles, kernel compiles)",
    )
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per case, about")
    parser.add_argument(
        "--dense-max-steps",
        type=int,
        default=10_000,
        help="largest T for the dense CPU path (its X is T*6400 floats)",
    )
    parser.add_argument("--gpu-dense-max-steps", type=int, default=100_000)
    parser.add_argument("--memory-steps", type=int, default=100_000)
    parser.add_argument(
        "--memory-dense-dtypes",
        nargs="*",
        default=["float32"],
        help="also measure the dense path's peak RSS for these dtypes (a contrast)",
    )
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=machine.RESULTS)
    parser.add_argument("--name", default="update", help="results file stem")
    parser.add_argument("--memory-child", nargs=3, metavar=("MODE", "DTYPE", "STEPS"))
    args = parser.parse_args(argv)
    if args.memory_child:
        mode, dtype, steps = args.memory_child
        memory_child(mode, dtype, int(steps))
        return

    info = machine.describe()
    print(machine.markdown_header(info, "Update benchmark"), flush=True)
    record: dict[str, Any] = {
        "machine": info,
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("out", "memory_child", "name")
        },
        "synthetic_batch": {
            "episodes": args.episodes,
            "nnz_per_step": f"Binomial({NNZ_MAX}, {NNZ_MEAN}/{NNZ_MAX})",
        },
    }
    record["settings"]["blas_threads_env"] = {
        k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS") if k in os.environ
    }
    started = time.perf_counter()
    record["update"] = measure(args, info["gpu"])
    record["memory"] = [] if args.no_memory else measure_memory(args)
    record["verdicts"] = verdicts(record)
    machine.finish_record(record, started)
    machine.write_results(record, markdown(record), args.out, args.name)


if __name__ == "__main__":
    main()
