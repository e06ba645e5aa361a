"""How long does one training run take to reach a running reward on this machine?

    python bench/run_to_win.py OUT --until 0 --time-limit 540 -- --preset steps \\
        --device gpu --num-envs 16 --batch-size 16 --seed 1

Runs ``train.py`` with the flags after ``--`` (its run folder in ``--work``,
outside the repo), stops it with SIGTERM (it saves) once its
running reward reaches ``--until`` or ``--time-limit`` seconds pass, and writes
into OUT: the training output (``train.log``), the per-episode log
(``metrics.jsonl``), ``summary.json`` and ``summary.md``: steps/s, the actors'
idle share (as the trainer reports it), the update's share of the training
time (timed around the trainer's own calls, as ``gpu_check.py`` does), and the
episodes, steps and minutes to running rewards of -15, -10, -5 and 0. Run it
again with the same ``--work`` and it continues the run from its checkpoint
(a second go), and the summary covers both goes.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
import machine
from bench_learning import crossings

from pongxp import checkpoint, metrics

GPU_CHECK = Path(__file__).resolve().parent / "gpu_check.py"
IDLE = re.compile(r"actors idle ([\d.]+)% of the rollout time")


def last_record(log: Path) -> tuple[int, float] | None:
    """(episode, running reward) of the log's last whole line, if any."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
            return int(record["episode"]), float(record["running_reward"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def run_go(args: argparse.Namespace, go: int) -> dict[str, Any]:
    """One go: start or resume the run; stop it at ``--until`` or the time limit."""
    run = args.work / "run"  # the run folder
    log = run / "metrics.jsonl"
    timings = args.work / f"timings-{go}.json"
    if (run / "checkpoint.npz").exists():
        flags = ["--resume", str(run), "--episodes", str(args.episodes)]
    else:
        flags = [*args.train, "--episodes", str(args.episodes), "--run", str(run)]
    flags += ["--checkpoint-every", "500"]
    cmd = [sys.executable, str(GPU_CHECK), "--train-child", str(timings), *flags]
    before = last_record(log)  # a second go: the first go's lines do not count
    started = time.perf_counter()
    with open(args.out / "train.log", "a") as out:
        out.write(f"$ {' '.join(cmd[1:])}\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        why = ["finished"]

        def watch() -> None:
            while proc.poll() is None:
                last = last_record(log)
                if last is not None and last != before and last[1] >= args.until:
                    why[0] = f"reached {args.until:g}"
                elif time.perf_counter() - started > args.time_limit:
                    why[0] = "time limit"
                else:
                    time.sleep(1)
                    continue
                proc.send_signal(signal.SIGTERM)  # train.py saves, then exits
                return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        code = proc.wait()
        watcher.join(timeout=5)
    return {"go": go, "stopped": why[0], "exit": code, "seconds": time.perf_counter() - started}


def summary(args: argparse.Namespace, goes: list[dict[str, Any]]) -> dict[str, Any]:
    ckpt = checkpoint.load(args.work / "run" / "checkpoint.npz")
    records = metrics.read(args.out / "metrics.jsonl")
    spans = copies = 0.0
    for path in sorted(args.work.glob("timings-*.json")):
        times = json.loads(path.read_text())
        spans += sum(end - start for start, end in times["updates"] if end == end)
        copies += sum(times["copies_s"])
    idle = [float(m) / 100 for m in IDLE.findall((args.out / "train.log").read_text())]
    return {
        "command": " ".join(args.train),
        "goes": goes,
        "episodes": ckpt.episode,
        "steps": ckpt.total_steps,
        "training_seconds": round(ckpt.elapsed, 1),
        # (A run stopped in its first batch saved the start: no training time yet.)
        "steps_per_s": round(ckpt.total_steps / max(ckpt.elapsed, 1e-9), 1),
        "running_reward": round(ckpt.running_reward, 2),
        "update_share": round((spans + copies) / max(ckpt.elapsed, 1e-9), 4),
        "actors_idle_each_go": idle,
        "crossings": crossings(records),
    }


def markdown(info: dict[str, Any], s: dict[str, Any], note: str) -> str:
    lines = [machine.markdown_header(info, "A run to a win, timed"), ""]
    if note:
        lines += [f"Also running: {note}", ""]
    lines += [
        f"Run: `train.py {s['command']}`; goes: "
        + "; ".join(f"{g['stopped']} after {g['seconds']:.0f} s" for g in s["goes"]),
        "",
        f"- {s['episodes']:,} episodes, {s['steps']:,} emulator steps in "
        f"{s['training_seconds'] / 60:.1f} min of training: {s['steps_per_s']:,.0f} steps/s",
        f"- the update's share of the training time: {s['update_share']:.1%}",
        "- actors idle (the trainer's figure, per go): "
        + ", ".join(f"{x:.1%}" for x in s["actors_idle_each_go"]),
        f"- running reward at the end: {s['running_reward']:+.2f}",
        "",
        "| running reward | episode | emulator steps | minutes |",
        "|---:|---:|---:|---:|",
    ]
    for level, hit in s["crossings"].items():
        if hit is None:
            lines.append(f"| {level} | not reached | | |")
        else:
            lines.append(
                f"| {level} | {hit['episode']:,} | {hit['steps']:,} | {hit['minutes']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    ours, train = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the log, metrics and summary")
    parser.add_argument("--until", type=float, default=0.0, help="running reward to stop at")
    parser.add_argument("--time-limit", type=float, default=540.0, help="seconds for this go")
    parser.add_argument("--episodes", type=int, default=100_000, help="passed to train.py")
    parser.add_argument("--work", type=Path, help="for the run folder (default: OUT/../work)")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    args = parser.parse_args(ours)
    args.train = train
    args.work = args.work or args.out.parent / "work"
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    goes_file = args.work / "goes.json"
    goes = json.loads(goes_file.read_text()) if goes_file.exists() else []
    if goes and not args.train:
        args.train = goes[0]["train"]
    if not goes and not args.train:
        parser.error("give train.py's flags after --")
    go = run_go(args, len(goes) + 1) | {"train": args.train}
    goes.append(go)
    goes_file.write_text(json.dumps(goes) + "\n")
    if not (args.work / "run" / "checkpoint.npz").exists():
        print(f"run_to_win: no checkpoint; see {args.out / 'train.log'}", file=sys.stderr)
        return 1
    shutil.copy(args.work / "run" / "metrics.jsonl", args.out / "metrics.jsonl")
    shutil.copy(goes_file, args.out / "goes.json")
    s = summary(args, goes)
    info = machine.describe()
    (args.out / "summary.json").write_text(json.dumps({"machine": info, **s}, indent=1) + "\n")
    (args.out / "summary.md").write_text(markdown(info, s, args.note))
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
