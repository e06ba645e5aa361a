"""What training prints: a bar on a terminal, plain lines elsewhere, no episodes if --quiet."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from conftest import ROOT, cli_env

from pongxp.metrics import read as read_metrics
from pongxp.progress import Progress, episode_line

RECORD = {
    "episode": 3,
    "reward": -20,
    "running_reward": -20.5,
    "steps": 1234,
    "steps_per_s": 2345.6,
    "total_steps": 4000,
    "time": 2.0,
    "run_steps_per_s": 4321.0,
}
SMALL = ("--episodes", "2", "--batch-size", "1", "--hidden", "16", "--device", "cpu")


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()  # isatty() is False, like a pipe or a log file
    progress = Progress(total=10, stream=out)
    progress.message("hello")
    progress.episode(RECORD)
    progress.close()
    assert out.getvalue().splitlines() == ["hello", episode_line(RECORD)]
    assert episode_line(RECORD) == (
        "episode      3 | reward -20 | running  -20.50 | steps  1234 | "
        "run   4321 steps/s, actor  2346"
    )


def test_quiet_keeps_messages_only() -> None:
    out = io.StringIO()
    progress = Progress(total=10, quiet=True, stream=out)
    progress.message("hello")
    progress.episode(RECORD)
    progress.close()
    assert out.getvalue() == "hello\n"


def test_train_prints_one_line_per_episode_to_a_pipe(train_cli, tmp_path: Path) -> None:
    proc = train_cli(*SMALL)
    assert proc.returncode == 0, proc.stderr
    # The run's rate: every step played by this process over its training time.
    for r in read_metrics(tmp_path / "run" / "metrics.jsonl"):
        assert r["run_steps_per_s"] == pytest.approx(r["total_steps"] / r["time"], rel=1e-2)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("episode ")]
    assert [line.split("|")[0].split() for line in lines] == [["episode", "1"], ["episode", "2"]]
    assert "\r" not in proc.stdout  # no bar redraws in a log file
    assert "done: 2 episodes" in proc.stdout
    assert proc.stderr == ""  # nor ale-py's ROM banner


def test_train_quiet_prints_no_episode_lines(train_cli) -> None:
    proc = train_cli(*SMALL, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in proc.stdout.splitlines() if line.startswith("episode ")]
    assert "done: 2 episodes" in proc.stdout


def test_train_shows_a_bar_on_a_terminal(tmp_path: Path) -> None:
    """A real pseudo-terminal, 100 columns wide, as an interactive shell gives."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    cmd = [sys.executable, str(ROOT / "train.py"), *SMALL]
    cmd += ["--run", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, stdout=slave, stderr=slave, env=cli_env())
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        proc.wait(timeout=120)
    assert proc.returncode == 0
    screen = b"".join(chunks).decode("utf-8", errors="replace")
    assert "2/2 ep [" in screen  # episodes done / total, then the elapsed time
    assert "<" not in screen  # no ETA: episodes grow longer as the agent learns
    assert "running=-2" in screen and "run_steps_s=" in screen
    assert "\r" in screen  # the bar redraws in place
    # Each episode's line scrolls above the bar.
    assert "episode      1 |" in screen and "episode      2 |" in screen
    assert "done: 2 episodes" in screen
    assert "A.L.E" not in screen and "Stella" not in screen  # ale-py's banner, silenced
