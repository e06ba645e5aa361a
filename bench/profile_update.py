"""Where does one update's time go, piece by piece, on this machine's CPU and GPU?

    python bench/profile_update.py --steps 50000 --out bench/results --name profile-update

Times each piece of the trainer's update (the one transfer, the forward pass,
the returns, the standardisation, the backward pass with its transposed sparse
product, RMSProp, the finiteness checks, the weights back to the host) on the
synthetic batch of ``bench_update.py``, and, for the transposed sparse product
``X.T @ B`` on the GPU, the ways cupyx can compute it. GPU pieces are timed with
``cupyx.profiler.benchmark`` (CUDA events, a sync after each call), CPU pieces
with ``time.perf_counter``; each figure is the median of the repeats. Writes
``<name>.md`` and ``<name>.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
import machine
from bench_update import UpdateCase, synthetic_batch, time_cpu, time_gpu

from pongxp import backend as backend_mod
from pongxp.batch import stack
from pongxp.config import INPUT_SIZE
from pongxp.optim import rmsprop_step
from pongxp.policy import backward, forward
from pongxp.returns import discounted_returns, standardize_per_episode
from pongxp.update import all_finite


def pieces(case: UpdateCase) -> dict[str, Callable[[], Any]]:
    """The update's pieces, each a call that redoes only its own work."""
    b, xp, cfg = case.backend, case.backend.xp, case.cfg
    host = stack(case.episodes)
    batch = b.batch_to_device(host, INPUT_SIZE)
    hidden, p_up = forward(case.params, batch.frames, xp)
    returns = discounted_returns(batch.rewards, batch.episode_id, cfg.gamma, xp)
    adv = standardize_per_episode(returns, batch.episode_id, batch.num_episodes, xp)
    weight = (batch.ups - p_up) * adv
    grads = backward(case.params, batch.frames, hidden, weight, xp)
    d_hidden = weight[:, None] * case.params["W2"][None, :]
    d_hidden = xp.where(hidden > 0, d_hidden, xp.zeros_like(d_hidden))
    return {
        "stack (host)": lambda: stack(case.episodes),
        "batch to device": lambda: b.batch_to_device(host, INPUT_SIZE),
        "forward": lambda: forward(case.params, batch.frames, xp),
        "returns": lambda: discounted_returns(batch.rewards, batch.episode_id, cfg.gamma, xp),
        "standardise": lambda: standardize_per_episode(
            returns, batch.episode_id, batch.num_episodes, xp
        ),
        "backward": lambda: backward(case.params, batch.frames, hidden, weight, xp),
        "  of it X.T @ dh": lambda: batch.frames.T @ d_hidden,
        "rmsprop": lambda: rmsprop_step(
            case.params, grads, case.cache, cfg.learning_rate, cfg.decay_rate, xp
        ),
        "finiteness checks": lambda: all_finite(grads, xp) and all_finite(case.params, xp),
        "weights to host": lambda: b.to_host_all(case.params),
        "whole update": case.update,
    }


def transposed_variants(case: UpdateCase) -> dict[str, Callable[[], Any]]:
    """``X.T @ B`` on the GPU, the ways cupyx offers (B is (T, H), C-ordered)."""
    import cupy
    import cupyx.scipy.sparse as cusparse

    b, xp = case.backend, case.backend.xp
    batch = b.batch_to_device(stack(case.episodes), INPUT_SIZE)
    x = batch.frames
    d_hidden = cupy.asarray(
        np.random.default_rng(0).standard_normal((x.shape[0], case.cfg.hidden)), b.dtype_name
    )
    canonical = cusparse.csr_matrix(x)
    canonical.has_canonical_format = True
    x_t = x.T.tocsr()
    return {
        "X.T @ B (as in the update)": lambda: x.T @ d_hidden,
        "X.T @ B, has_canonical_format set": lambda: canonical.T @ d_hidden,
        "X.T @ asfortranarray(B)": lambda: x.T @ cupy.asfortranarray(d_hidden),
        "(B.T @ X).T, dense @ sparse": lambda: (d_hidden.T @ x).T,
        "X.T.tocsr() once, then CSR @ B": lambda: x_t @ d_hidden,
        "X.T.tocsr() each time": lambda: x.T.tocsr() @ d_hidden,
        "csr_matrix(...) build alone": lambda: cusparse.csr_matrix(
            (x.data, x.indices, x.indptr), shape=x.shape
        ),
        "X @ W1.T (forward's product)": lambda: x @ xp.permute_dims(case.params["W1"], (1, 0)),
    }


def timed(fns: dict[str, Callable[[], Any]], gpu: bool, repeats: int) -> dict[str, float | str]:
    timer = time_gpu if gpu else time_cpu
    out: dict[str, float | str] = {}
    for name, fn in fns.items():
        try:
            out[name] = statistics.median(timer(fn, repeats, 2, 20.0))
        except Exception as exc:  # one variant cupyx refuses must not hide the others
            out[name] = f"error: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000, help="steps in the batch")
    parser.add_argument("--episodes", type=int, default=10, help="episodes in the batch")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per piece")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--out", type=Path, default=machine.RESULTS)
    parser.add_argument("--name", default="profile-update", help="results file stem")
    args = parser.parse_args(argv)
    info = machine.describe()
    episodes = synthetic_batch(args.steps, episodes=args.episodes)
    usable, reason = backend_mod.gpu_available()
    record: dict[str, Any] = {"machine": info, "settings": vars(args) | {"out": str(args.out)}}
    devices = ["cpu", "gpu"] if usable else ["cpu"]
    for device in devices:
        case = UpdateCase(backend_mod.select(device, args.dtype), episodes)
        record[device] = timed(pieces(case), device == "gpu", args.repeats)
        if device == "gpu":
            record["gpu_variants"] = timed(transposed_variants(case), True, args.repeats)
    if not usable:
        record["gpu"] = f"not run: {reason}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(record, args))
    print((args.out / f"{args.name}.md").read_text())
    return 0


def _ms(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value * 1e3:.3f}"


def markdown(record: dict[str, Any], args: argparse.Namespace) -> str:
    title = f"Update profile: {args.steps:,} steps, {args.episodes} episodes, {args.dtype}"
    lines = [machine.markdown_header(record["machine"], title), ""]
    gpu = record.get("gpu")
    lines += ["| piece | CPU (ms) | GPU (ms) |", "|---|---:|---:|"]
    for name, cpu in record["cpu"].items():
        on_gpu = gpu.get(name, "") if isinstance(gpu, dict) else ""
        lines.append(f"| {name} | {_ms(cpu)} | {_ms(on_gpu) if on_gpu != '' else '-'} |")
    if isinstance(gpu, str):
        lines += ["", f"GPU: {gpu}"]
    if "gpu_variants" in record:
        lines += ["", "The transposed sparse product on the GPU, each way:", ""]
        lines += ["| way | GPU (ms) |", "|---|---:|"]
        lines += [f"| {k} | {_ms(v)} |" for k, v in record["gpu_variants"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
