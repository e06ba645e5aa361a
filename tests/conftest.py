"""Shared fixtures: running the real CLI, a small real checkpoint, a local Ray instance.

Tests are hermetic: the whole session runs in an empty temporary working
directory (so a command left at its default folder, ``runs/``, can neither see
nor touch the user's runs), every subprocess inherits it, and the session
fails if anything was written there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def hermetic_cwd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Run the session in an empty directory; fail it if a test wrote there."""
    cwd = tmp_path_factory.mktemp("cwd")
    before = os.getcwd()
    os.chdir(cwd)
    try:
        yield cwd
    finally:
        os.chdir(before)
    left = sorted(p.name for p in cwd.iterdir())
    assert not left, f"tests wrote into the working directory: {left}; use tmp_path"


def needs(module: str, extra: str) -> pytest.MarkDecorator:
    """Skip a test, with the reason, where ``module`` of pongxp's pip ``extra`` is not
    installed (e.g. a GPU machine without Ray or an ffmpeg binary)."""
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(
        missing, reason=f"needs {module} (pongxp[{extra}]), which is not installed here"
    )


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pongxp ARGS`` (or train.py when args[0] == 'train.py')."""
    if args and args[0] == "train.py":
        cmd = [sys.executable, str(ROOT / "train.py"), *args[1:]]
    else:
        cmd = [sys.executable, "-m", "pongxp", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=cli_env())


@pytest.fixture
def train_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``train_cli(*flags)`` runs train.py with its run folder ``tmp_path/<name>``
    (without --resume; with it, only where --run is given)."""

    def run(*flags: str, name: str = "run") -> subprocess.CompletedProcess[str]:
        folder = () if "--resume" in flags else ("--run", str(tmp_path / name))
        return run_cli("train.py", *folder, "--device", "cpu", *flags)

    return run


#: A tiny run: hidden 16, batch 1, on the CPU, without per-episode lines.
FAST = ("--hidden", "16", "--batch-size", "1", "--device", "cpu", "--quiet")


def error_line(proc: subprocess.CompletedProcess[str] | tuple[int, str, str]) -> str:
    """The one ``error:`` line of a failed run; fails if stderr says anything else
    (ale-py's ROM banner included: pongxp silences it)."""
    stderr = proc[2] if isinstance(proc, tuple) else proc.stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def train_argv(run: Path, *flags: str) -> list[str]:
    """``python train.py --run RUN FLAGS`` (``run``: a run folder or its checkpoint.npz)."""
    folder = run.parent if run.name == "checkpoint.npz" else run
    return [sys.executable, str(ROOT / "train.py"), "--run", str(folder), *flags]


def default_sigint() -> None:
    # A child of a background shell inherits SIGINT ignored, and then Python
    # installs no KeyboardInterrupt handler; a terminal's Ctrl-C always has one.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(argv: list[str], env: dict[str, str] | None = None, **kwargs: object) -> subprocess.Popen:
    kwargs.setdefault("preexec_fn", default_sigint)
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**cli_env(), **(env or {})},
        **kwargs,  # type: ignore[arg-type]
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def run(argv: list[str], **kwargs: object) -> tuple[int, str, str]:
    return finish(start(argv, **kwargs))  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 60) -> None:
    """Poll ``condition`` every 2 ms; fail if the process ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"process ended first: {proc.returncode} {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting")
        time.sleep(0.002)


def logged(metrics: Path) -> int:
    """Episodes the run has finished (its metrics log, or run folder's, is flushed per
    episode)."""
    from pongxp.metrics import read as read_metrics
    from pongxp.run_folder import Run

    metrics = Run(metrics).log if metrics.is_dir() else metrics  # (run.json may come later)
    records = read_metrics(metrics) if metrics.is_file() else []
    return max((r["episode"] for r in records), default=0)


def temp_files(ckpt: Path) -> list[Path]:
    return sorted(ckpt.parent.glob(f".{ckpt.name}.tmp-*"))


def same_run(a: Path, b: Path) -> None:
    """Two checkpoints hold the same training state (wall time aside), bit for bit."""
    from pongxp import checkpoint

    x, y = checkpoint.load(a), checkpoint.load(b)
    for name in ("W1", "W2"):
        np.testing.assert_array_equal(x.params[name], y.params[name])
        np.testing.assert_array_equal(x.cache[name], y.cache[name])
    assert (x.episode, x.running_reward, x.total_steps) == (
        y.episode,
        y.running_reward,
        y.total_steps,
    )
    assert x.streams == y.streams


def saved_line(line: str, episode: int, ckpt: Path) -> bool:
    """Whether ``line`` is the interrupted run's line saying it saved ``episode`` to
    ``ckpt`` (with no batch finished since it started: "saved the start")."""
    import re

    start = rf"no batch had finished; saved the start \(episode {episode}\)"
    saved = rf"(saved episode {episode}|{start})"
    return re.match(rf"interrupted: {saved} to {re.escape(str(ckpt))}; ", line) is not None


#: A HostBatch's arrays (batch.py), compared by assert_same_episode.
FIELDS = ("indptr", "cols", "signs", "ups", "rewards", "lengths")


def assert_same_episode(a: Any, b: Any) -> None:
    """Two HostBatch objects hold the same arrays, dtype and all."""
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def make_backend(name: str, dtype: str = "float64") -> Any:
    """``cpu-sparse``, ``cpu-dense``, ``gpu``, ``strict`` or ``strict-DEVICE``."""
    from pongxp import backend as backend_mod

    if name == "cpu-sparse":
        return backend_mod.select("cpu", dtype, sparse=True)
    if name == "cpu-dense":
        return backend_mod.select("cpu", dtype, sparse=False)
    if name.startswith("strict-"):
        return backend_mod.StrictBackend(dtype, device=name.removeprefix("strict-"))
    return backend_mod.select(name, dtype)


#: The start of the Ray pool's note when it replaces a lost actor.
NOTE = "ray: lost the actor given slot"


def assert_same_run(tmp_path: Path, name: str, reference: Path) -> None:
    """Run ``tmp_path/name`` logged the same episodes and ended with the same weights
    as ``reference`` (a run's checkpoint)."""
    assert records(tmp_path / name) == records(reference.parent)
    want = weights(reference)
    for key, value in weights(tmp_path / name).items():
        np.testing.assert_array_equal(value, want[key])


def finished_with_notes(proc: subprocess.Popen) -> tuple[list[str], list[int]]:
    """A run that ended well: its stdout's lines, and which of them are lost-actor notes."""
    code, out, err = finish(proc)
    assert code == 0, err
    assert "Traceback" not in err and "A.L.E" not in err, err  # Ray may log; we may not
    lines = out.splitlines()
    return lines, [i for i, line in enumerate(lines) if line.startswith(NOTE)]


def episode_line(lines: list[str], episode: int) -> int:
    """Which of a run's stdout ``lines`` logs ``episode``."""
    return next(i for i, line in enumerate(lines) if line.startswith(f"episode {episode:6d} "))


#: A log record's wall-clock fields; everything else must repeat exactly.
TIMING = ("steps_per_s", "run_steps_per_s", "time")


def records(path: Path) -> list[dict]:
    """A run's log records (``path``: the run folder or its log) without TIMING."""
    from pongxp.run_folder import log_of

    lines = log_of(path).read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def weights(path: Path) -> dict[str, Any]:
    """A checkpoint's (or run folder's) weights and RMSProp cache, by name."""
    from pongxp import checkpoint

    ckpt = checkpoint.load(path)
    return {**ckpt.params, **{f"cache_{k}": v for k, v in ckpt.cache.items()}}


def run_cli_without(
    module: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m pongxp ARGS`` in a Python where ``module`` cannot be imported,
    as if its optional extra were not installed."""
    code = (
        f"import sys; sys.modules[{module!r}] = None; "
        "from pongxp.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True, text=True, timeout=timeout, env=cli_env(),
    )  # fmt: skip


def log_record(episode: int, **changes: object) -> dict[str, object]:
    """A metrics-log record as training writes it, for episode ``episode`` (each
    1000 steps long), with ``changes``; a value of None leaves that field out."""
    record: dict[str, object] = {
        "episode": episode, "reward": -21, "running_reward": -21.0, "steps": 1000,
        "steps_per_s": 2000.0, "total_steps": 1000 * episode, "time": 0.5 * episode,
        "run_steps_per_s": 2000.0,
    }  # fmt: skip
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


def log_lines(*records: dict[str, object]) -> str:
    """``records`` as the lines of a metrics log."""
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.fixture
def no_actors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if training starts its emulators: its checks must come first."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the emulators were started before the check")

    monkeypatch.setattr("pongxp.trainer.ActorPool", refuse)


def train_small(out: Path, name: str, *flags: str) -> Path:
    """Train a tiny real run (hidden 16, batch 1, CPU) into the folder ``out/name``;
    return its checkpoint."""
    proc = run_cli(
        "train.py", "--batch-size", "1", "--hidden", "16", "--device", "cpu",
        "--run", str(out / name), *flags,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out / name / "checkpoint.npz"


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run's checkpoint after 2 episodes (batch size 1, hidden 16), made once per
    session; its folder holds the run's metrics.jsonl."""
    return train_small(tmp_path_factory.mktemp("ckpt"), "small", "--episodes", "2")


def copy_run(checkpoint: Path, folder: Path) -> Path:
    """A copy of the run whose checkpoint is ``checkpoint`` (a run folder's) in
    ``folder``, to resume and change freely; its checkpoint."""
    shutil.copytree(checkpoint.parent, folder)
    return folder / "checkpoint.npz"


def hashes(*roots: Path, locks: bool = True) -> dict[str, str]:
    """The SHA-256 of every file under ``roots`` (a file root: itself), by path:
    compare before and after a command to see every file it changed. Without
    ``locks``, runs' ``.lock`` files are left out (a process that takes a run
    writes its pid there, as a resume stopped before training does)."""
    import hashlib

    found = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            if not locks and p.name == ".lock":
                continue
            found[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """Make ``directory`` refuse new files: chmod, or as root chattr +i (immutable)."""
    probe = directory / ".probe"

    def writable() -> bool:
        try:
            probe.write_text("x")
        except OSError:
            return False
        probe.unlink()
        return True

    mode = directory.stat().st_mode
    directory.chmod(0o555)
    immutable = False
    try:
        if writable() and shutil.which("chattr"):  # root ignores permissions
            immutable = subprocess.run(["chattr", "+i", str(directory)]).returncode == 0
        if writable():
            pytest.skip("cannot make a directory read-only here (root without chattr +i)")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        directory.chmod(mode)


#: The Ray tests' runs (test_ray.py, test_ray_nodes.py): tiny, two batches of three
#: slots, so that with two actors one of them plays two slots a batch.
RAY_SMALL = ("--hidden", "16", "--batch-size", "3", "--seed", "2", "--device", "cpu", "--quiet")
RAY_EPISODES = 6


@pytest.fixture(scope="session")
def processes_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Ray tests' reference: RAY_EPISODES episodes with two worker processes;
    its checkpoint (its metrics.jsonl beside it)."""
    out = tmp_path_factory.mktemp("processes") / "processes"
    proc = run_cli(
        "train.py", "--run", str(out), *RAY_SMALL,
        "--episodes", str(RAY_EPISODES), "--num-envs", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len((out / "metrics.jsonl").read_text().splitlines()) == RAY_EPISODES
    return out / "checkpoint.npz"


#: How long a Ray node started by the tests may take to come up: Ray itself gives its
#: raylet 30 s to register (fixed in ray/_private/node.py), which a busy machine misses.
RAY_START_S = 300


@contextlib.contextmanager
def patient_ray(what: str, seconds: float = RAY_START_S) -> Iterator[None]:
    """Give the Ray nodes started in the block ``seconds`` to come up, not Ray's 30 s;
    if they still do not, fail the test with the reason, not Ray's traceback.

    Ray waits for a new node by polling ``ray._private.services.get_node`` until its
    fixed 30 s are up; the block makes each of those look-ups wait for the node
    itself, up to ``seconds``. (Where a Ray version lacks that function, Ray's own
    wait applies.)
    """
    from ray._private import services

    original = getattr(services, "get_node", None)

    def get_node(*args: object, **kwargs: object) -> object:
        deadline = time.monotonic() + seconds
        while True:
            try:
                return original(*args, **kwargs)  # type: ignore[misc]
            except RuntimeError:  # the node has not registered yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    if original is not None:
        services.get_node = get_node
    try:
        yield
    except Exception as exc:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        pytest.fail(
            f"{what} did not start within {seconds:.0f} s (load average {load}); "
            f"is the machine overloaded? Ray said: {str(exc).strip().splitlines()[-1:]}",
            pytrace=False,
        )
    finally:
        if original is not None:
            services.get_node = original


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """One local Ray instance (4 CPUs) for all Ray tests, started once; its address.

    This process is its first driver (tests use ``ray.kill`` and named actors
    from here); training runs join it with ``--ray-address``. Skipped only
    where Ray cannot be imported (it comes with the ``test`` extra).
    """
    ray = pytest.importorskip("ray")
    sigterm = signal.getsignal(signal.SIGTERM)
    # (ray.init also sets RAY_AUTH_MODE=token here, which the runs that join need.)
    # address="local": a new instance, never another one found on this machine.
    with patient_ray("the tests' local Ray instance"):
        ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level=logging.ERROR)
    signal.signal(signal.SIGTERM, sigterm)  # ray.init's would exit pytest on SIGTERM
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
