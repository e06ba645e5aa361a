"""How many episodes, emulator steps and minutes does a setting need to reach a
running reward of -15, -10, -5 and 0?

    python bench/bench_learning.py        # karpathy vs fast, seeds 0 1 (hours)

Results: ``bench/results/learning.md``, ``.json`` and ``.png`` (``--name`` for
another stem); the runs themselves stay in ``--runs``, outside the repo.

Each setting is a set of ``train.py`` flags (same algorithm, other
hyperparameters); each (setting, seed) is one run of ``--episodes`` episodes,
run as ``train.py`` subprocesses, ``--jobs`` at a time, one actor each. Runs
keep their checkpoint and metrics log in ``--runs`` (outside the repo by
default), so an interrupted sweep, or one given more episodes, resumes where
it stopped; finished runs are not run again. Then the logs are read and the
table (``bench/results/<name>.md`` and ``.json``) and the curves of all runs
on one figure (``<name>.png``) are written.

Steps are the fairest cost figure: the emulator takes ~90% of a step's time,
so wall time is steps divided by the machine's rate, and a run that shared its
core with other work logs a longer wall time for the same steps.

    python bench/bench_learning.py                          # karpathy vs fast, seeds 0 1
    python bench/bench_learning.py --setting lr3e-4 --lr 3e-4 --episodes 1500
    python bench/bench_learning.py --report-only            # just re-read the logs
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import machine
import numpy as np

from pongxp import metrics
from pongxp.config import PRESETS, usable_cores
from pongxp.run_folder import Run

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (-15.0, -10.0, -5.0, 0.0)


def preset_flags(name: str) -> list[str]:
    return [] if name == "karpathy" else ["--preset", name]


def crossings(
    records: list[dict[str, Any]], levels: Sequence[float] = THRESHOLDS
) -> dict[str, dict[str, float] | None]:
    """For each level, the first episode whose running reward reaches it.

    Returns:
        {"-15": {"episode", "steps", "minutes"} or None if never reached, ...}
    """
    out: dict[str, dict[str, float] | None] = {}
    for t in levels:
        hit = next((r for r in records if r["running_reward"] >= t), None)
        out[f"{t:g}"] = (
            None
            if hit is None
            else {
                "episode": hit["episode"],
                "steps": hit["total_steps"],
                "minutes": round(hit["time"] / 60, 1),
            }
        )
    return out


def _last_record(log: Path) -> dict[str, Any]:
    """The last complete line of a run's log; {} if none."""
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            record = json.loads(line)
            float(record["running_reward"])
            return record
        except (ValueError, KeyError, TypeError):
            continue  # a line being written
    return {}


def _stop_reason(log: Path, until: float | None, max_steps: float | None) -> str:
    """Why a screen needs no more of this run ("" while it does)."""
    last = _last_record(log)
    if not last:
        return ""
    if until is not None and float(last["running_reward"]) >= until:
        return f"reached {until:g}"
    if max_steps is not None and int(last.get("total_steps", 0)) >= max_steps:
        short = f" without reaching {until:g}" if until is not None else ""
        return f"played {max_steps:,.0f} steps{short}"
    return ""


def run_all(
    runs: list[tuple[str, list[str], Path]],
    episodes: int,
    jobs: int,
    until: float | None = None,
    tensorboard: bool = False,
    max_steps: float | None = None,
) -> None:
    """Run (or resume) each ``(name, flags, stem)`` to ``episodes``, ``jobs`` at a time.

    With ``until``, a run also stops (SIGTERM: it saves and can be resumed)
    once its running reward reaches that level: a screen needs no more; with
    ``max_steps``, also once it has played that many emulator steps (a screen's
    cut-off: a run that needs more fails it). With
    ``tensorboard``, a new run also writes TensorBoard events (with the
    per-batch policy figures of ``pongxp.diagnostics``) into its run folder's ``tb/``.
    """
    todo = []
    for name, flags, stem in runs:
        run = Run(stem)  # the run's folder: runs_dir/<name>-s<seed>
        log = run.log
        done = len(log.read_text().splitlines()) if log.exists() else 0
        if done >= episodes or _stop_reason(log, until, max_steps):
            continue
        ckpt = run.checkpoint
        start = ["--resume", str(stem)] if ckpt.exists() else ["--run", str(stem), *flags]
        flat = stem.with_name(stem.name + ".npz")  # an older sweep's run, as flat files
        if not ckpt.exists() and flat.exists():
            start = ["--resume", str(flat)]  # becomes the run folder ``stem``
        if tensorboard and not ckpt.exists():
            start += ["--tensorboard"]
        cmd = [sys.executable, str(ROOT / "train.py"), *start, "--episodes", str(episodes),
               "--num-envs", "1", "--device", "cpu", "--quiet",
               "--checkpoint-every", "100"]  # fmt: skip
        todo.append((name, cmd, log))
    running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    while todo or running:
        while todo and len(running) < jobs:
            name, cmd, log = todo.pop(0)
            print(f"start {name}: {' '.join(cmd[2:])}", flush=True)
            running.append((name, subprocess.Popen(cmd, stdout=subprocess.DEVNULL), log))
        time.sleep(5)
        for item in list(running):
            name, proc, log = item
            reason = _stop_reason(log, until, max_steps) if proc.poll() is None else ""
            if reason:
                proc.terminate()  # train.py saves on SIGTERM
                proc.wait()
                print(f"{reason}: {name}", flush=True)
                running.remove(item)
            elif proc.poll() is not None:
                running.remove(item)
                status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
                print(f"{status}: {name}", flush=True)


def report(
    settings: dict[str, list[str]], seeds: Sequence[int], runs_dir: Path, at: int, goal: float
) -> dict:
    table: dict[str, Any] = {}
    for name, flags in settings.items():
        per_seed = {}
        for seed in seeds:
            log = Run(runs_dir / f"{name}-s{seed}").log
            if not log.exists():
                continue
            records = metrics.read(log)
            per_seed[seed] = {
                "episodes": len(records),
                "steps": records[-1]["total_steps"] if records else 0,
                "minutes": round(records[-1]["time"] / 60, 1) if records else 0,
                "final_running_reward": round(records[-1]["running_reward"], 2)
                if records
                else None,
                "running_reward_at": (
                    round(records[at - 1]["running_reward"], 2) if len(records) >= at else None
                ),
                # The table's levels, and the goal the verdict names.
                "reached": crossings(records, sorted({*THRESHOLDS, goal})),
            }
            # A run folder's tb/; RUNS/<run>-tb for the flat runs of older sweeps.
            tb_dir = runs_dir / f"{name}-s{seed}" / "tb"
            if not tb_dir.is_dir():
                tb_dir = runs_dir / f"{name}-s{seed}-tb"
            if tb_dir.is_dir():
                per_seed[seed]["phases"] = band_diagnostics(tb_dir, records)
        table[name] = {"flags": flags, "seeds": per_seed}
    return table


#: Running-reward bands of the diagnostics table: what the policy and its updates
#: look like in each phase of a run.
BANDS = ((-21.0, -15.0), (-15.0, -10.0), (-10.0, -5.0), (-5.0, 0.0), (0.0, 21.0))
#: The per-batch TensorBoard figures shown per band (pongxp.diagnostics and the steps).
FIGURES = (
    "batch/steps",
    "policy/entropy",
    "policy/abs_p_minus_half",
    "update/relative_step_W1",
    "norms/grad_W1",
)


def band_diagnostics(tb_dir: Path, records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per running-reward band: updates per million emulator steps, mean game
    length, and the mean of each of ``FIGURES`` over the band's batches.

    A batch falls in the band of the running reward logged last before its
    last step. Needs the ``tensorboard`` package (the test extra) to read events.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    if "batch/steps" not in tags:
        return {}
    ends = np.array([e.step for e in events.Scalars("batch/steps")])
    series = {}
    for tag in FIGURES:
        points = events.Scalars(tag) if tag in tags else []
        if [e.step for e in points] == ends.tolist():  # one value per batch
            series[tag] = np.array([e.value for e in points])
    logged = np.array([r["total_steps"] for r in records], dtype=np.int64)
    running = np.array([r["running_reward"] for r in records])
    lengths = np.array([r["steps"] for r in records])
    at = np.clip(np.searchsorted(logged, ends, side="right") - 1, 0, len(records) - 1)
    out: dict[str, dict[str, float]] = {}
    for low, high in BANDS:
        batches = (running[at] >= low) & (running[at] < high)
        games = (running >= low) & (running < high)
        if not batches.any():
            continue
        played = float(series["batch/steps"][batches].sum())
        row = {
            "batches": int(batches.sum()),
            "updates_per_M_steps": round(batches.sum() / played * 1e6, 1),
            "mean_game_steps": round(float(lengths[games].mean()), 0) if games.any() else 0.0,
        }
        for tag, values in series.items():
            if tag != "batch/steps":
                row[tag] = float(values[batches].mean())
        out[f"{low:g}..{high:g}"] = row
    return out


def _cell(hit: dict[str, float] | None, runs_to: int) -> str:
    if hit is None:
        return f"not by {runs_to:,}"
    return f"{hit['episode']:,} ep, {hit['steps'] / 1e6:.1f}M steps, {hit['minutes']:.0f} min"


def _verdict(goal: float, hit: dict[str, float] | None, runs_to: int) -> str:
    if hit is None:
        return f"running reward {goal:g} not reached by episode {runs_to:,}"
    return f"running reward {goal:g} reached at " + _cell(hit, runs_to)


def markdown(record: dict[str, Any]) -> str:
    at = record["compare_at"]
    lines = [machine.markdown_header(record["machine"], "Learning speed: time to running reward")]
    lines += [
        "Same algorithm, other hyperparameters. Each cell: the first episode whose running "
        "reward reached the threshold, the emulator steps played by then, and the training "
        "wall time logged by then. " + record["note"],
        "",
        f"| setting | flags | seed | -15 | -10 | -5 | 0 | running reward at episode {at:,} "
        "| episodes run | final running reward |",
        "|---|---|---:|---|---|---|---|---:|---:|---:|",
    ]
    for name, row in record["table"].items():
        for seed, r in row["seeds"].items():
            cells = " | ".join(_cell(r["reached"][f"{t:g}"], r["episodes"]) for t in THRESHOLDS)
            at_value = r["running_reward_at"]
            at_cell = "" if at_value is None else f"{at_value:+.2f}"
            lines.append(
                f"| {name} | `{' '.join(row['flags']) or '(defaults)'}` | {seed} | {cells} | "
                f"{at_cell} | {r['episodes']:,} | {r['final_running_reward']:+.2f} |"
            )
    lines += [
        "",
        "Median over seeds: episodes and emulator steps to reach each level (runs that "
        "never did count as missing):",
        "",
    ]
    lines += [
        f"| setting | -15 | -10 | -5 | 0 | mean running reward at episode {at:,} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in record["table"].items():
        cells = []
        for t in THRESHOLDS:
            hits = [r["reached"][f"{t:g}"] for r in row["seeds"].values()]
            eps = [h["episode"] for h in hits if h is not None]
            steps = [h["steps"] for h in hits if h is not None]
            missing = len(hits) - len(eps)
            cell = (
                f"{statistics.median(eps):,.0f} ({statistics.median(steps) / 1e6:.1f}M)"
                if eps
                else "-"
            )
            cells.append(cell + (f" ({missing} of {len(hits)} not reached)" if missing else ""))
        values = [r["running_reward_at"] for r in row["seeds"].values()]
        values = [v for v in values if v is not None]
        cells.append(f"{statistics.mean(values):+.2f} ({len(values)} seeds)" if values else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    phases = [
        (name, seed, band, row)
        for name, t in record["table"].items()
        for seed, r in t["seeds"].items()
        for band, row in r.get("phases", {}).items()
    ]
    if phases:
        lines += [
            "",
            "Per phase of each run (running-reward band), from its TensorBoard events: "
            "updates per million emulator steps, mean game length, and per-batch means of "
            "the policy's entropy (nats; a coin flip is 0.693), |p(up) - 1/2|, the update's "
            "relative step ||dW1|| / ||W1||, and ||grad W1||:",
            "",
            "| run | band | batches | updates / M steps | game steps | entropy | abs(p - 1/2) "
            "| step W1 | grad W1 |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, seed, band, row in phases:
            figures = [row.get(t) for t in FIGURES[1:]]
            shown = " | ".join("" if v is None else f"{v:.3g}" for v in figures)
            lines.append(
                f"| {name} s{seed} | {band} | {row['batches']:,} | "
                f"{row['updates_per_M_steps']:.1f} | {row['mean_game_steps']:,.0f} | {shown} |"
            )
    lines += ["", f"Curves: `{record['plot']}`." if record.get("plot") else "", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets", nargs="*", default=None, choices=sorted(PRESETS),
        help="named settings to compare (karpathy = train.py's defaults); default: "
        "karpathy and fast, or none when --setting names the settings",
    )  # fmt: skip
    parser.add_argument(
        "--setting", nargs=2, action="append", default=[], metavar=("NAME", "FLAGS"),
        help="an extra setting: a name and its train.py flags in one string, "
        "e.g. --setting lr3e-4 '--lr 3e-4'",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--episodes", type=int, default=1500, help="episodes per run")
    parser.add_argument(
        "--until", type=float, default=None, metavar="R",
        help="also stop each run once its running reward reaches R (a screen, e.g. -10); "
        "the verdicts name R (default: 0, a win); give it with --report-only too",
    )  # fmt: skip
    parser.add_argument(
        "--max-steps", type=float, default=None, metavar="N",
        help="also stop each run once it has played N emulator steps (a screen's cut-off)",
    )  # fmt: skip
    parser.add_argument("--jobs", type=int, default=usable_cores(), help="runs at once")
    parser.add_argument(
        "--tensorboard", action="store_true",
        help="new runs also write TensorBoard events, per-batch policy figures included, "
        "into each run folder's tb/",
    )  # fmt: skip
    parser.add_argument("--runs", type=Path, default=Path.home() / "pongxp-runs" / "learning")
    parser.add_argument("--report-only", action="store_true", help="read the logs only")
    parser.add_argument(
        "--compare-at", type=int, default=1000, help="also report each run's running reward here"
    )
    parser.add_argument("--note", default="", help="text for the results (e.g. other load)")
    parser.add_argument("--out", type=Path, default=machine.RESULTS)
    parser.add_argument("--name", default="learning", help="results file stem")
    args = parser.parse_args(argv)

    presets = args.presets
    if presets is None:  # the default pair only where no --setting says what to compare
        presets = [] if args.setting else ["karpathy", "fast"]
    settings = {name: preset_flags(name) for name in presets}
    settings.update({name: flags.split() for name, flags in args.setting})
    goal = 0.0 if args.until is None else args.until  # a screen's goal, else the win
    args.runs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if not args.report_only:
        runs = [
            (f"{name}-s{seed}", [*flags, "--seed", str(seed)], args.runs / f"{name}-s{seed}")
            for name, flags in settings.items()
            for seed in args.seeds
        ]
        run_all(runs, args.episodes, args.jobs, args.until, args.tensorboard, args.max_steps)
    record: dict[str, Any] = {
        "machine": machine.describe(),
        "settings": {
            k: machine.shown_path(v) if isinstance(v, Path) else str(v)
            for k, v in vars(args).items()
            if k != "out"
        },
        "note": args.note,
        "compare_at": args.compare_at,
        "table": report(settings, args.seeds, args.runs, args.compare_at, goal),
    }
    logs = sorted(p.parent for p in args.runs.glob("*/metrics.jsonl"))  # run folders
    wanted = [p for p in logs if p.name.rsplit("-s", 1)[0] in settings]
    if wanted:
        from pongxp.plot import plot_files

        png = args.out / f"{args.name}.png"
        args.out.mkdir(parents=True, exist_ok=True)
        # Steps, not wall time: the runs of a sweep share cores unevenly.
        plot_files(wanted, png, labels=[p.name for p in wanted], x=("episode", "steps"))
        record["plot"] = machine.shown_path(png)
    record["verdicts"] = [
        f"{name} seed {seed}: " + _verdict(goal, r["reached"][f"{goal:g}"], r["episodes"])
        for name, row in record["table"].items()
        for seed, r in row["seeds"].items()
    ]
    machine.finish_record(record, started)
    machine.write_results(record, markdown(record), args.out, args.name)


if __name__ == "__main__":
    main()
