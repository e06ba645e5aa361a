"""How much faster are today's returns and per-episode standardisation, and the
whole update, than the previous one-hot code, on the same batches?

    python bench/bench_returns.py         # E = 4, 10, 64 at 100k and 400k steps

Results: ``bench/results/returns.md`` and ``.json``.

The previous code (an argsort for the next point and an episodes x steps
one-hot matrix for per-episode sums, kept in tests/reference.py as the tests'
oracle) and today's O(steps) code run alternately in one process on the same
batch, so load from other processes on a shared machine falls on both alike.
Each timed call is one of ``--rounds``; the table gives the minimum (the least
disturbed) and the median. The whole update is ``bench_update.UpdateCase``:
what the trainer does per batch, on NumPy sparse CSR.

    python bench/bench_returns.py                        # E = 4, 10, 64 at 100k and 400k steps
    python bench/bench_returns.py --steps 50000 --episodes 64 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import machine
from bench_update import UpdateCase, synthetic_batch

import pongxp.update
from pongxp import backend as backend_mod
from pongxp.returns import discounted_returns, standardize_per_episode


# -- the previous code (before issue 16; tests/reference.py keeps it as the tests' oracle)
def discounted_returns_argsort(rewards: Any, episode_id: Any, gamma: float, xp: Any) -> Any:
    """G[t] = gamma**(n - t) * r[n], n the next boundary, found with an argsort."""
    n_steps = rewards.shape[0]
    index = xp.arange(n_steps, dtype=xp.int64)
    last_of_episode = xp.concat([episode_id[1:] != episode_id[:-1], xp.asarray([True])])
    boundary = (rewards != 0) | last_of_episode
    counts = xp.astype(boundary, xp.int64)
    boundaries_before = xp.cumulative_sum(counts) - counts
    positions = xp.argsort(xp.where(boundary, index, index + n_steps))
    next_boundary = xp.take(positions, boundaries_before)
    distance = xp.astype(next_boundary - index, rewards.dtype)
    return xp.pow(xp.asarray(gamma, dtype=rewards.dtype), distance) * xp.take(
        rewards, next_boundary
    )


def standardize_per_episode_onehot(values: Any, episode_id: Any, num_episodes: int, xp: Any) -> Any:
    """Per-episode standardisation through an (E, T) one-hot membership matrix."""
    member = xp.astype(
        episode_id[None, :] == xp.arange(num_episodes, dtype=episode_id.dtype)[:, None],
        values.dtype,
    )
    count = xp.sum(member, axis=1)
    mean = xp.take((member @ values) / count, episode_id)
    centred = values - mean
    std = xp.take(xp.sqrt((member @ (centred * centred)) / count), episode_id)
    return centred / xp.where(std > 0, std, xp.ones_like(std))


CODE = {
    "previous": (discounted_returns_argsort, standardize_per_episode_onehot),
    "today": (discounted_returns, standardize_per_episode),
}


class Case:
    """One synthetic batch on NumPy, timed with either code."""

    def __init__(self, steps: int, episodes: int, dtype: str) -> None:
        self.backend = backend_mod.select("cpu", dtype)
        self.update_case = UpdateCase(self.backend, synthetic_batch(steps, episodes=episodes))
        self.batch = self.update_case.transfer()

    def returns_step(self, code: str) -> None:
        returns, standardize = CODE[code]
        b, xp = self.batch, self.backend.xp
        g = returns(b.rewards, b.episode_id, self.update_case.cfg.gamma, xp)
        standardize(g, b.episode_id, b.num_episodes, xp)

    def update(self, code: str) -> None:
        """The whole update with ``code``'s returns (``pongxp.update`` looks them up per call)."""
        pongxp.update.discounted_returns, pongxp.update.standardize_per_episode = CODE[code]
        try:
            self.update_case.update()
        finally:
            pongxp.update.discounted_returns, pongxp.update.standardize_per_episode = CODE["today"]


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for steps in args.steps:
        for episodes in args.episodes:
            case = Case(steps, episodes, args.dtype)
            for what, fn in (
                ("returns + standardize", case.returns_step),
                ("whole update", case.update),
            ):
                for code, t in alternate(fn, args.rounds).items():
                    row = {
                        "what": what,
                        "code": code,
                        "steps": steps,
                        "episodes": episodes,
                        "min_s": min(t),
                        "median_s": statistics.median(t),
                        "all_s": t,
                    }
                    rows.append(row)
                    print(
                        f"T={steps:>6} E={episodes:>2} {what:22s} {code:8s}: "
                        f"min {min(t) * 1e3:9.1f} ms, median {row['median_s'] * 1e3:9.1f} ms",
                        flush=True,
                    )
    return rows


def alternate(fn: Callable[[str], None], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of ``fn(code)`` for each code, alternating, after one warm-up each."""
    times: dict[str, list[float]] = {code: [] for code in CODE}
    for code in CODE:
        fn(code)
    for _ in range(rounds):
        for code in CODE:
            t0 = time.perf_counter()
            fn(code)
            times[code].append(time.perf_counter() - t0)
    return times


def markdown(record: dict[str, Any]) -> str:
    lines = [machine.markdown_header(record["machine"], "Returns step: previous vs today's code")]
    lines += [
        "Previous = argsort + (episodes x steps) one-hot standardisation "
        "(tests/reference.py); today = O(steps) segment sums (pongxp/returns.py). "
        f"{record['settings']['dtype']}, NumPy, synthetic batches as in bench_update.py, "
        f"{record['settings']['rounds']} alternating rounds after a warm-up.",
        "",
        "| what | T (steps) | E (episodes) | previous min (ms) | today min (ms) "
        "| previous median (ms) | today median (ms) | today / previous (min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_key: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = {}
    for r in record["rows"]:
        by_key.setdefault((r["what"], r["steps"], r["episodes"]), {})[r["code"]] = r
    for (what, steps, episodes), pair in by_key.items():
        old, new = pair["previous"], pair["today"]
        lines.append(
            f"| {what} | {steps:,} | {episodes} | {old['min_s'] * 1e3:,.1f} | "
            f"{new['min_s'] * 1e3:,.1f} | {old['median_s'] * 1e3:,.1f} | "
            f"{new['median_s'] * 1e3:,.1f} | {new['min_s'] / old['min_s']:.2f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100_000, 400_000])
    parser.add_argument("--episodes", type=int, nargs="+", default=[4, 10, 64])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=machine.RESULTS)
    parser.add_argument("--name", default="returns")
    args = parser.parse_args(argv)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "name")}
    record, started = machine.start_record("Returns step: previous vs today's code", settings)
    record["rows"] = measure(args)
    record["verdicts"] = []
    machine.finish_record(record, started)
    machine.write_results(record, markdown(record), args.out, args.name)


if __name__ == "__main__":
    main()
