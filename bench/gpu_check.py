"""Does a GPU machine run pongxp: its GPU tests, the update benchmark, training on GPU vs CPU?

On a machine with an NVIDIA GPU and CuPy (bench/README.md, "GPU check", says how
to carry the wheels it lacks):

    python3 bench/gpu_check.py bench/results/gpu-check --wheels .whl

installs the carried wheels into ``--site`` if a needed module is missing, then
runs these parts, each in a subprocess with its own time limit, all within
``--time-limit`` (470 s by default):

1. the GPU tests (``pytest -m gpu``): every one must run and pass, none skip;
2. ``bench/bench_update.py`` at 1k/10k/50k/100k steps, float32 and float64, CPU
   and GPU rows in the same run (goal: the GPU >= 30x the best CPU update at
   50k steps, transfer included);
3. ``train.py --device cpu`` and ``--device gpu``, one actor per core and one
   episode per actor in a batch: steps/s, the update's time per batch and its
   share of the wall time (timed around the trainer's own calls);
4. the rest of the suite (``pytest -m "not gpu"``): tests that need an extra
   missing there (Ray, imageio-ffmpeg, ...) skip with their reason, listed.

It prints one line per check (passed, failed or not run) and writes every log,
table and JSON into the directory named first (gpu-check.md is the summary).
Without a usable GPU it stops at once with one line saying why (exit 2);
``--cpu-only`` runs everything but the GPU parts, to find this script's own bugs
on a CPU machine. Exit 0 when every check that ran passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
#: What the tests and the training need beyond the GPU image (gpu-wheels/README.md).
NEEDED = ("numpy", "scipy", "gymnasium", "ale_py", "array_api_compat", "array_api_strict")
NEEDED += ("pytest", "tqdm")
#: A skip reason that says a test wanted the GPU, marked ``gpu`` or not.
GPU_SKIP = re.compile(r"cupy|cuda|gpu", re.IGNORECASE)
PARTS = ("gpu-tests", "bench", "train", "tests")
SUMMARY = "gpu-check"
LOGS = ("pytest.log", "bench-update.log", "train.log")
PASSED, FAILED, NOT_RUN = "passed", "failed", "not run"


def bench_module(name: str) -> ModuleType:
    """Import ``bench/NAME.py`` (bench/ is no package), with the repository importable."""
    for path in (str(ROOT), str(BENCH)):
        if path not in sys.path:
            sys.path.insert(0, path)
    return importlib.import_module(name)


class Stop(Exception):
    """The check cannot start; the message is its one line."""


class Terminated(Exception):
    """SIGTERM: stop the running part (its process group) and keep what was written."""


# -- one part: a subprocess with a log and a time limit --------------------------------
@dataclass
class PartRun:
    """How a part's subprocess ended."""

    command: list[str]
    log: str
    limit_s: float
    seconds: float = 0.0
    returncode: int | None = None
    timed_out: bool = False
    last_line: str = ""  # of the log, when it failed


def run_part(
    command: list[str], log: Path, limit_s: float, env: dict[str, str], cwd: Path = ROOT
) -> PartRun:
    """Run ``command`` with stdout and stderr into ``log``; past ``limit_s`` seconds
    stop its whole process group (SIGTERM, then SIGKILL) and note that in the log."""
    result = PartRun(command, log.name, round(limit_s, 1))
    started = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own group: actors and pytest's children go too
        )
        try:
            result.returncode = proc.wait(timeout=max(limit_s, 1))
        except subprocess.TimeoutExpired:
            result.timed_out = True
            result.returncode = _stop_group(proc)
            out.write(f"\n[gpu_check: stopped at its time limit of {limit_s:.0f} s]\n")
        finally:
            if proc.poll() is None:  # Ctrl-C or SIGTERM while waiting
                _stop_group(proc)
    result.seconds = round(time.perf_counter() - started, 1)
    if result.returncode != 0:
        result.last_line = last_line(log)
    return result


def _stop_group(proc: subprocess.Popen[Any]) -> int:
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


# -- checks -------------------------------------------------------------------------
@dataclass
class Check:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.name}: {self.status.upper()}: {self.detail}"


@dataclass
class Outcome:
    """One test's result, as the OutcomeRecorder plugin wrote it."""

    nodeid: str
    outcome: str  # passed, failed, skipped, error
    when: str  # collect, setup, call, teardown
    gpu: bool  # marked ``gpu``
    reason: str = ""
    seconds: float = 0.0


class OutcomeRecorder:
    """pytest plugin: one JSON line per test outcome (and per collection error),
    with the test's ``gpu`` mark, which pytest's own reports leave out."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "w")  # noqa: SIM115 - closed in pytest_unconfigure

    def _write(self, outcome: Outcome) -> None:
        self.file.write(json.dumps(asdict(outcome)) + "\n")
        self.file.flush()

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            text = str(report.longrepr).strip().splitlines()
            self._write(Outcome(report.nodeid, "error", "collect", False, text[-1] if text else ""))
        elif report.skipped:  # a whole module, e.g. pytest.importorskip at its top
            self._write(Outcome(report.nodeid, "skipped", "collect", False, _skip_reason(report)))

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when != "call" and report.passed:
            return  # setup and teardown that went fine
        outcome = "error" if report.failed and report.when != "call" else report.outcome
        reason = ""
        if report.skipped:
            reason = _skip_reason(report)
        elif report.failed:  # pytest's first "E   ..." line says what went wrong
            text = report.longreprtext.strip().splitlines()
            said = [line[1:].strip() for line in text if line.startswith("E ")]
            reason = (said or text or [""])[0][:300]
        gpu = "gpu" in report.keywords
        self._write(Outcome(report.nodeid, outcome, report.when, gpu, reason, report.duration))

    def pytest_unconfigure(self) -> None:
        self.file.close()


def _skip_reason(report: Any) -> str:
    text = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return str(text).removeprefix("Skipped: ")


def last_line(log: Path) -> str:
    """The last line a part wrote to its log (its error, when it failed)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    said = [line.strip() for line in lines if line.strip() and not line.startswith("[gpu_check")]
    return said[-1][:300] if said else ""


def read_outcomes(path: Path) -> list[Outcome]:
    if not path.exists():
        return []
    return [Outcome(**json.loads(line)) for line in path.read_text().splitlines() if line]


def tests_check(
    name: str,
    run: PartRun | None,
    outcomes: list[Outcome],
    gpu_required: bool,
    gpu_tests_expected: bool = False,
) -> Check:
    """Passed when pytest finished with every test passed or skipped for a reason that
    is allowed: with ``gpu_required`` no test may skip for want of a GPU (marked
    ``gpu`` or saying CuPy/CUDA/GPU), and with ``gpu_tests_expected`` too at least one
    ``gpu`` test must have passed."""
    if run is None:
        return Check(name, NOT_RUN, "out of time")
    count = {k: sum(o.outcome == k for o in outcomes) for k in ("passed", "failed", "skipped")}
    count["error"] = sum(o.outcome == "error" for o in outcomes)
    summary = ", ".join(f"{v} {k}" for k, v in count.items() if v or k == "passed")
    bad = [o for o in outcomes if o.outcome in ("failed", "error")]
    problems = []
    if bad:
        problems.append("not passed: " + "; ".join(f"{o.nodeid} ({o.reason})" for o in bad[:3]))
        problems[-1] += f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    if gpu_required:
        no_gpu = [
            o for o in outcomes if o.outcome == "skipped" and (o.gpu or GPU_SKIP.search(o.reason))
        ]
        if no_gpu:
            problems.append(
                f"{len(no_gpu)} GPU test(s) skipped: {no_gpu[0].nodeid} ({no_gpu[0].reason})"
            )
        if gpu_tests_expected and not any(o.gpu and o.outcome == "passed" for o in outcomes):
            problems.append("no GPU test ran")
    if run.timed_out:
        problems.append(f"stopped at its time limit ({run.limit_s:.0f} s)")
    elif run.returncode != 0 and not bad:
        problems.append(f"pytest exited {run.returncode}")
    detail = f"{summary} in {run.seconds:.0f} s (log {run.log})"
    if problems:
        return Check(name, FAILED, f"{'; '.join(problems)}; {detail}")
    return Check(name, PASSED, detail)


def skipped_by_reason(outcomes: list[Outcome]) -> dict[str, list[str]]:
    """The skipped tests grouped by their reason, most common first."""
    groups: dict[str, list[str]] = {}
    for o in outcomes:
        if o.outcome == "skipped":
            groups.setdefault(o.reason, []).append(o.nodeid)
    return dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))


def bench_checks(
    run: PartRun | None, record: dict[str, Any] | None, gpu: bool
) -> tuple[Check, Check]:
    """(the benchmark ran cleanly, the GPU update reached the speed-up goal)."""
    bench_update = bench_module("bench_update")
    target, steps = bench_update.TARGET_GPU_SPEEDUP, bench_update.TARGET_STEPS
    goal = f"GPU update >= {target:.0f}x best CPU at {steps:,} steps"
    if run is None:
        return Check("update benchmark", NOT_RUN, "out of time"), Check(goal, NOT_RUN, "")
    if record is None:
        why = "stopped at its time limit" if run.timed_out else f"exited {run.returncode}"
        detail = f"{why}, no results written (rows so far in {run.log}: {run.last_line})"
        return Check("update benchmark", FAILED, detail), Check(goal, NOT_RUN, "no results")
    rows = record["update"]
    wanted = ("cpu", "gpu") if gpu else ("cpu",)
    errors = [
        r for r in rows if r["device"] in wanted and r["status"].startswith(("error", "no GPU"))
    ]
    ok = [r for r in rows if r.get("status") == "ok"]
    detail = (
        f"{len(ok)} rows timed in {run.seconds:.0f} s (log {run.log}, table {record['name']}.md)"
    )
    ran = Check("update benchmark", PASSED, detail)
    if errors or run.returncode != 0:
        first = errors[0] if errors else {"device": "", "frames": "", "dtype": "", "steps": ""}
        status = first.get("status", f"exited {run.returncode}")
        ran = Check(
            "update benchmark",
            FAILED,
            f"{len(errors)} row(s) failed, e.g. {first['device']} {first['frames']} "
            f"{first['dtype']} T={first['steps']}: {status}; {detail}",
        )
    if not gpu:
        return ran, Check(goal, NOT_RUN, "--cpu-only")
    # Training's path: sparse CSR frames, float32 (the default dtype), default batch.
    batch = bench_update.EPISODES_PER_BATCH
    row = next(
        (
            r
            for r in ok
            if r["device"] == "gpu" and r["steps"] == steps and r["frames"] == "sparse CSR"
            and r["dtype"] == "float32"
            and r.get("episodes", batch) == batch
        ),
        None,
    )  # fmt: skip
    if row is None or "speedup_vs_best_cpu" not in row:
        return ran, Check(goal, NOT_RUN, f"no GPU sparse float32 row at T = {steps:,}")
    best_cpu = row["update_s"] * row["speedup_vs_best_cpu"]
    speedup = row["speedup_vs_best_cpu"]
    detail = (
        f"{speedup:.1f}x: GPU sparse float32 {row['update_s'] * 1e3:.1f} ms vs best CPU "
        f"{best_cpu * 1e3:.1f} ms, transfer included"
    )
    return ran, Check(goal, PASSED if speedup >= target else FAILED, detail)


# -- training: the update's time per batch, measured around the trainer's own calls --------
def train_child(timings: Path, argv: list[str]) -> int:
    """Run ``train.py ARGV`` in this process, timing each batch's update: from stacking
    the batch (then one transfer, the update, the finiteness checks that wait for the
    device) to the last check, plus each copy of the weights back to the host
    (checkpoint saves left out). Writes the times to ``timings`` as JSON."""
    from pongxp import backend as backend_mod
    from pongxp import trainer
    from pongxp.cli import train_main

    updates: list[list[float]] = []  # [start, end] per batch
    # Seconds of copying update k's weights back to the host (at the next batch's start;
    # checkpoint saves left out): one entry per update.
    copies: list[float] = []
    saving = [False]

    def wrap(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        if not hasattr(owner, name):
            raise SystemExit(f"gpu_check: cannot time the update: {owner.__name__}.{name} is gone")
        setattr(owner, name, make(getattr(owner, name)))

    def timed_stack(stack: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            updates.append([time.perf_counter(), float("nan")])
            copies.append(0.0)
            return stack(*args, **kwargs)

        return run

    def timed_finite(all_finite: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            ok = all_finite(*args, **kwargs)
            if updates:
                updates[-1][1] = time.perf_counter()
            return ok

        return run

    def timed_copy(to_host: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = to_host(*args, **kwargs)
            if updates and not saving[0]:
                copies[-1] += time.perf_counter() - t0
            return out

        return run

    def flagged_save(save: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            saving[0] = True
            try:
                return save(*args, **kwargs)
            finally:
                saving[0] = False

        return run

    wrap(trainer, "stack", timed_stack)
    wrap(trainer, "all_finite", timed_finite)
    wrap(trainer, "_save", flagged_save)
    for cls in (backend_mod.Backend, backend_mod.CupyBackend):
        wrap(cls, "to_host", timed_copy)
    try:
        return train_main(argv)
    finally:
        timings.write_text(json.dumps({"updates": updates, "copies_s": copies}) + "\n")


def train_summary(
    device: str, actors: int, run: PartRun, timings: Path, metrics_path: Path, ckpt_path: Path
) -> dict[str, Any]:
    """Steps/s, the update per batch and its share of the wall time, from one run's
    checkpoint, metrics log and the child's timings."""
    from pongxp import checkpoint
    from pongxp.metrics import read

    out: dict[str, Any] = {"device": device, "seconds_whole_process": run.seconds}
    ckpt = checkpoint.load(ckpt_path)
    records = read(metrics_path)
    times = json.loads(timings.read_text())
    spans = [end - start for start, end in times["updates"]]
    copies = times["copies_s"]
    batch = ckpt.config.batch_size
    per_batch = [s + c for s, c in zip(spans, copies, strict=True)]
    out.update(
        actors=actors,
        batch_size=batch,
        dtype=ckpt.config.dtype,
        hidden=ckpt.config.hidden,
        episodes=ckpt.episode,
        batches=len(spans),
        steps=ckpt.total_steps,
        training_seconds=round(ckpt.elapsed, 3),
        steps_per_s=round(ckpt.total_steps / ckpt.elapsed, 1),
        update_s=[round(s, 6) for s in spans],
        weights_to_host_s=[round(c, 6) for c in copies],  # the last one: 0, no next batch
        update_per_batch_median_s=statistics.median(per_batch),
        update_first_batch_s=per_batch[0],
        update_share=sum(per_batch) / ckpt.elapsed,
    )
    if len(spans) >= 2:
        # From the end of batch 1's update to the end of the last: whole batches only,
        # past one-off costs (actors' first ROM load, CuPy's kernel compiles).
        wall = times["updates"][-1][1] - times["updates"][0][1]
        steps_after = sum(r["steps"] for r in records[batch:])
        out.update(
            steady_steps_per_s=round(steps_after / wall, 1),
            steady_update_share=sum(per_batch[1:]) / wall,
        )
    return out


def train_check(device: str, run: PartRun | None, summary: dict[str, Any] | None) -> Check:
    name = f"train --device {device}"
    if run is None:
        return Check(name, NOT_RUN, "out of time")
    if summary is None or run.returncode != 0:
        why = "stopped at its time limit" if run.timed_out else f"exited {run.returncode}"
        return Check(name, FAILED, f"{why}: {run.last_line} (log {run.log})")
    s = summary
    steady = f", {s['steady_steps_per_s']:,.0f} after batch 1" if "steady_steps_per_s" in s else ""
    share = s.get("steady_update_share", s["update_share"])
    return Check(
        name,
        PASSED,
        f"{s['actors']} actor{'s' if s['actors'] != 1 else ''}, {s['episodes']} episodes, "
        f"{s['steps']:,} steps: "
        f"{s['steps_per_s']:,.0f} steps/s{steady}; update "
        f"{s['update_per_batch_median_s'] * 1e3:.1f} ms/batch (median; first "
        f"{s['update_first_batch_s'] * 1e3:.0f} ms), "
        f"{share:.1%} of the wall time",
    )


# -- setup ---------------------------------------------------------------------------
def probe_gpu() -> str | None:
    """None when CuPy can run a kernel on a CUDA device, else why not (one line).

    Raises:
        ImportError: pongxp itself cannot be imported (the wheels may bring what it needs).
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from pongxp.backend import gpu_available

    usable, reason = gpu_available()
    return None if usable else reason


def prepare(args: argparse.Namespace) -> str:
    """The GPU probe (first, so that a machine without one is told at once) and the
    wheels; what was installed.

    Raises:
        Stop: no usable GPU, or missing modules that the wheels do not bring.
    """
    setup = None
    if not args.cpu_only:
        try:
            problem = probe_gpu()
        except ImportError:  # pongxp needs a module that only the wheels bring
            setup = install_wheels(args.wheels, args.site)
            try:
                problem = probe_gpu()
            except ImportError as exc:
                raise Stop(f"cannot import pongxp from {ROOT} ({exc})") from exc
        if problem is not None:
            raise Stop(f"no usable GPU: {problem}; nothing was run (--cpu-only runs the rest)")
    return setup or install_wheels(args.wheels, args.site)


def missing_modules() -> list[str]:
    return [m for m in NEEDED if importlib.util.find_spec(m) is None]


def install_wheels(wheels: Path | None, site: Path) -> str:
    """Make NEEDED importable, installing ``wheels`` into ``site`` if need be; what was done.

    Raises:
        Stop: a module is missing and no wheels (or bad ones) were given.
    """
    if site.is_dir():
        sys.path.insert(0, str(site))
    missing = missing_modules()
    if not missing:
        return "nothing to install"
    if wheels is None:
        raise Stop(
            f"missing {', '.join(missing)}; carry the wheels (bench/README.md, GPU check) "
            "and add --wheels DIR"
        )
    files = sorted(wheels.glob("*.whl"))
    if not files:
        raise Stop(f"--wheels {wheels}: no .whl files there")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    cmd += ["--no-compile", "--upgrade", "--target", str(site), *map(str, files)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as exc:
        raise Stop(f"installing the wheels from {wheels} took over 180 s") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise Stop(f"installing the wheels from {wheels} failed: {last}")
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    still = missing_modules()
    if still:
        raise Stop(f"still missing after installing {wheels}: {', '.join(still)}")
    return f"installed {len(files)} wheels into {site} (missing were {', '.join(missing)})"


def child_env(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(site)] if site.is_dir() else []
    paths += [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- the run -------------------------------------------------------------------------
@dataclass
class Report:
    """Everything the check found; rewritten to OUT after every part."""

    out: Path
    mode: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    setup: str = ""
    checks: list[Check] = field(default_factory=list)
    parts: dict[str, PartRun] = field(default_factory=dict)
    tests: dict[str, list[Outcome]] = field(default_factory=dict)
    training: dict[str, dict[str, Any]] = field(default_factory=dict)
    bench_verdicts: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add(self, check: Check) -> None:
        self.checks.append(check)
        print(check.line(), flush=True)
        self.write()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.started, 1)

    def write(self) -> None:
        record = {
            "mode": self.mode,
            "machine": self.machine,
            "settings": self.settings,
            "setup": self.setup,
            "seconds": self.seconds,
            "checks": [asdict(c) for c in self.checks],
            "parts": {k: asdict(v) for k, v in self.parts.items()},
            "training": self.training,
            "bench_verdicts": self.bench_verdicts,
            "tests": {k: [asdict(o) for o in v] for k, v in self.tests.items()},
        }
        (self.out / f"{SUMMARY}.json").write_text(json.dumps(record, indent=1) + "\n")
        (self.out / f"{SUMMARY}.md").write_text(self.markdown())

    def markdown(self) -> str:
        machine = bench_module("machine")

        title = "GPU check" + (
            " (--cpu-only: GPU parts not run)" if self.mode == "cpu-only" else ""
        )
        lines = [machine.markdown_header(self.machine, title)]
        lines += [f"Setup: {self.setup}. Wall time: {self.seconds:.0f} s.", ""]
        lines += ["| check | result | detail |", "|---|---|---|"]
        lines += [f"| {c.name} | {c.status} | {c.detail} |" for c in self.checks]
        if self.training:
            lines += [
                "",
                "## Training: GPU vs CPU",
                "",
                "Update = stack the batch, one transfer, forward/backward/RMSProp, the finiteness "
                "checks (which wait for the device), and the weights back to the host; timed "
                "around the trainer's own calls. 'After batch 1' leaves out one-off costs "
                "(actor start-up, CuPy's kernel compiles).",
                "",
                "| device | actors | batch | episodes | steps | steps/s | steps/s after batch 1 "
                "| update per batch, median (ms) | first update (ms) | update share | "
                "update share after batch 1 |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for s in self.training.values():
                steady = s.get("steady_steps_per_s")
                share = s.get("steady_update_share")
                lines.append(
                    f"| {s['device']} | {s['actors']} | {s['batch_size']} | {s['episodes']} | "
                    f"{s['steps']:,} | {s['steps_per_s']:,.0f} | "
                    f"{'' if steady is None else f'{steady:,.0f}'} | "
                    f"{s['update_per_batch_median_s'] * 1e3:.1f} | "
                    f"{s['update_first_batch_s'] * 1e3:.1f} | {s['update_share']:.1%} | "
                    f"{'' if share is None else f'{share:.1%}'} |"
                )
        if self.bench_verdicts:
            lines += ["", "## Update benchmark", ""] + [f"- {v}" for v in self.bench_verdicts]
        for name, outcomes in self.tests.items():
            groups = skipped_by_reason(outcomes)
            lines += ["", f"## Skipped in {name} ({sum(map(len, groups.values()))})", ""]
            for reason, ids in groups.items():
                lines.append(f"- {len(ids)} x {reason}: {', '.join(ids[:6])}")
                lines[-1] += f" and {len(ids) - 6} more" if len(ids) > 6 else ""
        lines += ["", "Files: " + ", ".join(sorted(p.name for p in self.out.iterdir())), ""]
        return "\n".join(lines)


class Clock:
    """The time left of ``--time-limit``, shared out among the parts still to run."""

    def __init__(self, limit_s: float) -> None:
        self.deadline = time.perf_counter() + limit_s

    def slot(self, cap_s: float, later_floor_s: float) -> float:
        """Seconds for the next part: at most ``cap_s``, leaving the later parts their floors."""
        return min(cap_s, self.deadline - time.perf_counter() - later_floor_s)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for every log, table and JSON")
    parser.add_argument("--cpu-only", action="store_true", help="skip the GPU parts (no GPU)")
    parser.add_argument("--wheels", type=Path, help="carried wheels to install if need be")
    parser.add_argument("--site", type=Path, default=Path(tempfile.gettempdir()) / "pongxp-site")
    parser.add_argument("--time-limit", type=float, default=470.0, help="seconds, all parts")
    parser.add_argument("--skip", nargs="+", default=[], choices=PARTS, help="parts to leave out")
    parser.add_argument("--tests", nargs="+", default=["tests"], help="what pytest runs")
    parser.add_argument(
        "--bench-steps", type=int, nargs="+", default=[1000, 10_000, 50_000, 100_000]
    )
    parser.add_argument("--bench-args", default="", help="more bench_update.py flags, one string")
    parser.add_argument("--actors", type=int, help="rollout actors (default: one per core)")
    parser.add_argument("--batch-size", type=int, help="episodes per update (default: --actors)")
    parser.add_argument("--batches", type=int, default=12, help="updates per training run")
    parser.add_argument("--hidden", type=int, default=200)
    args = parser.parse_args(argv)
    for flag in ("time_limit", "actors", "batch_size", "batches", "hidden"):
        value = getattr(args, flag)
        if value is not None and not value > 0:
            parser.error(f"--{flag.replace('_', '-')} must be > 0, got {value}")
    if any(s <= 0 for s in args.bench_steps):
        parser.error(f"--bench-steps must be positive integers, got {args.bench_steps}")
    if args.wheels is not None and not args.wheels.is_dir():
        parser.error(f"--wheels {args.wheels} is not a directory")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--train-child"]:
        return train_child(Path(argv[1]), argv[2:])
    if argv[:1] == ["--pytest-child"]:
        import pytest

        return int(pytest.main(argv[2:], plugins=[OutcomeRecorder(Path(argv[1]))]))
    args = parse(argv)
    started = time.perf_counter()
    try:
        setup = prepare(args)
        if args.out.exists() and not args.out.is_dir():
            raise Stop(f"{args.out} is not a directory")
        args.out.mkdir(parents=True, exist_ok=True)
    except Stop as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2

    def terminated(signum: int, frame: object) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, terminated)
    machine = bench_module("machine")
    from pongxp.config import usable_cores

    for log in LOGS:  # a rerun into the same directory starts its logs afresh
        (args.out / log).unlink(missing_ok=True)
    report = Report(
        out=args.out.resolve(),
        mode="cpu-only" if args.cpu_only else "gpu",
        machine=machine.describe(),
        settings={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        setup=setup,
        started=started,
    )
    report.write()
    print(f"gpu_check: {report.mode} mode, {setup}; results in {report.out}", flush=True)
    try:
        run_all(args, report, usable_cores())
    except (KeyboardInterrupt, Terminated):
        report.add(Check("gpu_check", FAILED, "interrupted; what ran so far is kept"))
    report.write()
    counts = {s: sum(c.status == s for c in report.checks) for s in (PASSED, FAILED, NOT_RUN)}
    print(
        f"gpu_check: {counts[PASSED]} passed, {counts[FAILED]} failed, {counts[NOT_RUN]} not run "
        f"in {report.seconds:.0f} s; summary {report.out / (SUMMARY + '.md')}"
    )
    return 1 if counts[FAILED] else 0


def run_all(args: argparse.Namespace, report: Report, cores: int) -> None:
    gpu = not args.cpu_only
    out, env = report.out, child_env(args.site)
    clock = Clock(args.time_limit)
    actors = args.actors or cores
    batch = args.batch_size or actors
    devices = ["cpu", "gpu"] if gpu else ["cpu"]
    # (part, cap s, floor s): the scarce GPU parts first, the long CPU suite last.
    plan = [("gpu-tests", 120, 30), ("bench", 150, 40)]
    plan += [(f"train-{d}", 75, 20) for d in devices] + [("tests", 330, 60)]
    plan = [p for p in plan if p[0].removesuffix("-cpu").removesuffix("-gpu") not in args.skip]
    planned = [p[0] for p in plan]

    def slot(part: str) -> float:
        index = planned.index(part)
        return clock.slot(plan[index][1], sum(p[2] for p in plan[index + 1 :]))

    def pytest_part(part: str, name: str, marker: str) -> None:
        limit = slot(part)
        if limit < 10:
            report.add(Check(name, NOT_RUN, "out of time"))
            return
        outcomes = out / f"pytest-{part}.jsonl"
        cmd = pytest_command(outcomes, marker, args.tests)
        print(f"... {name}: pytest -m '{marker}', up to {limit:.0f} s", flush=True)
        run = run_part(cmd, out / "pytest.log", limit, env)
        report.parts[part] = run
        report.tests[name] = read_outcomes(outcomes)
        outcomes.unlink(missing_ok=True)  # kept in gpu-check.json
        expected = gpu and marker == "gpu"
        report.add(tests_check(name, run, report.tests[name], gpu, expected))

    if "gpu-tests" in planned:
        pytest_part("gpu-tests", "gpu tests", "gpu")
    if "bench" in planned:
        bench_part(args, report, env, slot("bench"), gpu)
    for device in devices:
        if f"train-{device}" in planned:
            train_part(args, report, env, slot(f"train-{device}"), device, actors, batch)
    if "tests" in planned:
        pytest_part("tests", "other tests", "not gpu")


def pytest_command(outcomes: Path, marker: str, tests: Sequence[str]) -> list[str]:
    """pytest on ``tests`` marked ``marker``, recording outcomes to ``outcomes``.

    A module that cannot be imported (an extra missing on this machine) is an
    error of its own, not a reason to run no test at all: collection goes on.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--pytest-child", str(outcomes)]
    cmd += ["-m", marker, "-v", "-rs", "-p", "no:cacheprovider"]
    return [*cmd, "--continue-on-collection-errors", *tests]


def bench_part(
    args: argparse.Namespace, report: Report, env: dict[str, str], limit: float, gpu: bool
) -> None:
    name = "update-gpu" if gpu else "update-cpu-only"
    if limit < 10:
        for check in bench_checks(None, None, gpu):
            report.add(check)
        return
    cmd = [sys.executable, str(BENCH / "bench_update.py"), "--steps", *map(str, args.bench_steps)]
    # Batches of 10 and 64 episodes: the default and the many-core size, not every size.
    cmd += ["--dtypes", "float32", "float64", "--episodes", "10", "64", "--no-memory"]
    cmd += ["--out", str(report.out)]
    cmd += ["--name", name, *args.bench_args.split()]
    print(f"... update benchmark: T = {args.bench_steps}, up to {limit:.0f} s", flush=True)
    result = report.out / f"{name}.json"
    result.unlink(missing_ok=True)
    run = run_part(cmd, report.out / "bench-update.log", limit, env)
    report.parts["bench"] = run
    record = json.loads(result.read_text()) if result.exists() else None
    if record is not None:
        record["name"] = name
        report.bench_verdicts = record.get("verdicts", [])
    for check in bench_checks(run, record, gpu):
        report.add(check)


def train_part(
    args: argparse.Namespace,
    report: Report,
    env: dict[str, str],
    limit: float,
    device: str,
    actors: int,
    batch: int,
) -> None:
    if limit < 10:
        report.add(train_check(device, None, None))
        return
    episodes = batch * args.batches
    metrics = report.out / f"train-{device}.jsonl"
    timings = report.out / f"train-{device}-timings.json"
    with tempfile.TemporaryDirectory() as tmp:  # the checkpoint is not a result
        ckpt = Path(tmp) / "run" / "checkpoint.npz"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--train-child", str(timings)]
        cmd += ["--device", device, "--num-envs", str(actors), "--batch-size", str(batch)]
        cmd += ["--episodes", str(episodes), "--hidden", str(args.hidden), "--seed", "0"]
        cmd += ["--run", str(ckpt.parent)]
        cmd += ["--checkpoint-every", str(episodes), "--quiet"]
        print(
            f"... train --device {device}: {actors} actors, {episodes} episodes, "
            f"up to {limit:.0f} s",
            flush=True,
        )
        run = run_part(cmd, report.out / "train.log", limit, env)
        report.parts[f"train-{device}"] = run
        if ckpt.with_name("metrics.jsonl").exists():  # the log is a result
            shutil.copyfile(ckpt.with_name("metrics.jsonl"), metrics)
        summary = None
        if run.returncode == 0 and ckpt.exists() and timings.exists():
            summary = train_summary(device, actors, run, timings, metrics, ckpt)
            report.training[device] = summary
    timings.unlink(missing_ok=True)  # kept in gpu-check.json
    check = train_check(device, run, summary)
    cpu = report.training.get("cpu")
    if device == "gpu" and summary is not None and cpu is not None:
        check.detail += "; " + versus_cpu(summary, cpu)
    report.add(check)


def versus_cpu(gpu: dict[str, Any], cpu: dict[str, Any]) -> str:
    """The GPU run against the CPU run, in one phrase."""
    steps = gpu["steps_per_s"] / cpu["steps_per_s"]
    update = cpu["update_per_batch_median_s"] / gpu["update_per_batch_median_s"]
    return f"vs CPU: {steps:.2f}x the steps/s, the update {update:.1f}x as fast"


if __name__ == "__main__":
    sys.exit(main())
