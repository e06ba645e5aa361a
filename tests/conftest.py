"""Shared fixtures: running the real CLI, and a small real checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=cli_env(), cwd=ROOT
    )


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


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint after 2 episodes (batch size 1, hidden 16), made once per session."""
    out = tmp_path_factory.mktemp("ckpt")
    proc = run_cli(
        "train.py",
        "--episodes", "2",
        "--batch-size", "1",
        "--hidden", "16",
        "--device", "cpu",
        "--checkpoint", str(out / "small.npz"),
        "--metrics", str(out / "small.jsonl"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out / "small.npz"
