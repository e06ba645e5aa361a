"""Shared fixtures: running the real CLI, a small real checkpoint, a local Ray instance.

Tests are hermetic: the whole session runs in an empty temporary working
directory (so a command left at its default paths, e.g. ``runs/pong.npz``,
can neither see nor touch the user's runs), every subprocess inherits it,
and the session fails if anything was written there.
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
    """``train_cli(*flags)`` runs train.py with checkpoint and metrics in tmp_path."""

    def run(*flags: str, name: str = "run") -> subprocess.CompletedProcess[str]:
        return run_cli(
            "train.py",
            "--checkpoint",
            str(tmp_path / f"{name}.npz"),
            "--metrics",
            str(tmp_path / f"{name}.jsonl"),
            "--device",
            "cpu",
            *flags,
        )

    return run


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
    """Train a tiny real run (hidden 16, batch 1, CPU) into ``out``; return its checkpoint."""
    proc = run_cli(
        "train.py", "--batch-size", "1", "--hidden", "16", "--device", "cpu",
        "--checkpoint", str(out / f"{name}.npz"), "--metrics", str(out / f"{name}.jsonl"),
        *flags,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out / f"{name}.npz"


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint after 2 episodes (batch size 1, hidden 16), made once per session."""
    return train_small(tmp_path_factory.mktemp("ckpt"), "small", "--episodes", "2")


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
    its checkpoint (its metrics log beside it)."""
    out = tmp_path_factory.mktemp("processes")
    proc = run_cli(
        "train.py", "--checkpoint", str(out / "processes.npz"),
        "--metrics", str(out / "processes.jsonl"), *RAY_SMALL,
        "--episodes", str(RAY_EPISODES), "--num-envs", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len((out / "processes.jsonl").read_text().splitlines()) == RAY_EPISODES
    return out / "processes.npz"


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
