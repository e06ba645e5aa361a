"""What the bench scripts share: the record of what a result was measured on,
where results go, and a quiet training run.

Every results file under ``bench/results/`` starts with the machine record, so
a number can always be traced to the CPU, GPU, driver, library versions, git
commit and exact command line that produced it. The scripts import this module
as ``import machine`` (bench/ is on ``sys.path`` when a script runs).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pongxp.config import usable_cores

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

_PACKAGES = ("numpy", "scipy", "gymnasium", "ale-py", "array-api-compat", "pongxp")
_CUPY_PACKAGES = ("cupy", "cupy-cuda12x", "cupy-cuda13x")


def cpu_model() -> str:
    """The CPU's model name (with family/model numbers, which VMs often leave as the
    only precise part), from /proc/cpuinfo where there is one."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def gpu_info() -> dict[str, Any]:
    """The CUDA device CuPy would use, or why there is none (``available: False``)."""
    from pongxp.backend import gpu_available

    usable, reason = gpu_available()
    if not usable:  # the reason may name the clone's path
        return {"available": False, "reason": reason.replace(str(ROOT), "the clone")}
    import cupy

    device = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(device.id)
    name = props["name"]
    info: dict[str, Any] = {
        "available": True,
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "cuda_driver_api": cupy.cuda.runtime.driverGetVersion(),
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "cupy": cupy.__version__,
    }
    try:  # the driver's own version string, e.g. 550.54.15
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if out.returncode == 0:
            info["driver"] = out.stdout.strip().splitlines()[device.id]
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return info


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES + _CUPY_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name in _PACKAGES:
                out[name] = "not installed"
    try:
        import numpy as np

        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # the config layout differs between NumPy versions
        pass
    return out


def git_revision() -> str:
    """HEAD's commit, with ``+dirty`` when the working tree has changes (read-only calls)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=20
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def _shown_arg(arg: str) -> str:
    """A command-line word as a result may show it: a path (alone or after ``NAME=``)
    relative to the repository, or said to be outside it (``shown_path``)."""
    name, sep, value = arg.rpartition("=") if "=" in arg else ("", "", arg)
    if value.startswith(("/", "~")):
        return name + sep + shown_path(value)
    return arg


def command_line() -> str:
    """The command that ran this script, relative to the repository root, with no
    path outside it."""
    return shlex.join(["python", _shown_arg(sys.argv[0]), *map(_shown_arg, sys.argv[1:])])


def describe() -> dict[str, Any]:
    """The machine/software/command record stored with every result."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": command_line(),
        "git": git_revision(),
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "memory_gib": memory_gib(),
        "os": platform.platform(),
        "gpu": gpu_info(),
        "versions": versions(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
    }


def markdown_header(machine: dict[str, Any], title: str) -> str:
    """A Markdown block naming the machine, software and command of a result."""
    gpu = machine["gpu"]
    if gpu["available"]:
        gpu_line = (
            f"{gpu['name']} ({gpu['memory_gib']} GiB), driver {gpu.get('driver', '?')} "
            f"(CUDA driver API {gpu['cuda_driver_api']}, runtime {gpu['cuda_runtime']}), "
            f"CuPy {gpu['cupy']}"
        )
    else:
        gpu_line = f"none usable here ({gpu['reason']})"
    v = machine["versions"]
    soft = ", ".join(f"{k} {v[k]}" for k in v)
    load = machine.get("load_average_at_start")
    return "\n".join(
        [
            f"# {title}",
            "",
            f"- Command: `{machine['command']}`",
            f"- Date: {machine['date']}; git {machine['git']}",
            f"- CPU: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB RAM; "
            f"{machine['os']}",
            f"- GPU: {gpu_line}",
            f"- Software: {soft}",
            f"- Load average when started (1/5/15 min): {load}",
            "",
        ]
    )


def start_record(title: str, settings: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Describe the machine, print the results header, and start the clock.

    Returns:
        (record with "machine" and "settings", perf_counter start for ``finish_record``).
    """
    info = describe()
    print(markdown_header(info, title), flush=True)
    return {"machine": info, "settings": settings}, time.perf_counter()


def finish_record(record: dict[str, Any], started: float) -> None:
    """Stamp a benchmark record with its run time and the load average at its end."""
    record["seconds"] = round(time.perf_counter() - started, 1)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    record["machine"]["load_average_at_end"] = [round(x, 2) for x in load] if load else None


def training_paths(
    tmp: Path, num_envs: int, seed: int, batches: int, actors: str = "processes"
) -> tuple[Path, Path]:
    """The checkpoint and metrics log of the ``train_run`` run with these settings (in
    its run folder)."""
    from pongxp.run_folder import Run

    run = Run(tmp / f"bench-{actors}-{num_envs}-{seed}-{batches}")
    return run.checkpoint, run.log


def train_run(
    args: Any,
    num_envs: int,
    seed: int,
    batches: int,
    tmp: Path,
    actors: str = "processes",
    batch_steps: int = 0,
    episodes: int | None = None,
) -> Any:
    """A quiet CPU training run of ``batches`` batches; its final committed state.

    ``args`` gives ``env_id``, ``batch_size`` and ``dtype``. ``actors="ray"``
    needs Ray initialised by the caller (the run uses it as is). With
    ``batch_steps`` (``--batch-steps``) a run ends at a batch boundary once
    ``episodes`` episodes have ended, however many batches that takes. Its
    checkpoint and metrics log are ``training_paths(tmp, ...)``.
    """
    import contextlib
    import io

    from pongxp.config import TrainConfig
    from pongxp.trainer import train

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


def shown_path(path: Path | str) -> str:
    """``path`` as a result may show it: relative to the repository when inside it,
    else "a file outside the repo (NAME)", so no home directory is written."""
    resolved = Path(path).expanduser().resolve()
    if resolved.is_relative_to(ROOT):
        return str(resolved.relative_to(ROOT))
    return f"a file outside the repo ({resolved.name})"


def write_results(record: dict[str, Any], table: str, out: Path, name: str) -> None:
    """Write ``out/name.json`` and ``out/name.md`` and print the verdicts."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / f"{name}.md").write_text(table)
    print("\n".join(record["verdicts"]))
    print(f"wrote {out / (name + '.json')} and .md ({record['seconds']} s)")
