"""Evaluation from checkpoints: reproducible scores, a correct summary, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import needs, run_cli

from pongxp import checkpoint
from pongxp.evaluate import evaluate


def test_same_seed_same_games_in_process_and_cli(small_checkpoint: Path) -> None:
    first = evaluate(small_checkpoint, episodes=2, seed=5)
    again = evaluate(small_checkpoint, episodes=2, seed=5)
    assert first.episodes == again.episodes
    # A separate process (the CLI) plays the very same games.
    proc = run_cli("evaluate", str(small_checkpoint), "--episodes", "2", "--seed", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # stdout is the JSON document alone
    assert [ln.split("|")[0].split() for ln in proc.stderr.splitlines() if "|" in ln] == [
        ["episode", "1"],
        ["episode", "2"],
    ]  # the per-game lines went to stderr
    assert out["scores"] == first.scores().tolist()
    assert out["episodes"] == 2 and out["greedy"] is False and out["seed"] == 5
    # Another seed is another game (the step counts of two games practically never match).
    other = evaluate(small_checkpoint, episodes=2, seed=6)
    assert [e.steps for e in other.episodes] != [e.steps for e in first.episodes]


def test_summary_matches_the_games(small_checkpoint: Path) -> None:
    result = evaluate(small_checkpoint, episodes=3, seed=1, greedy=True)
    assert result.greedy
    for e in result.episodes:
        # Every episode is a whole game: one side reached 21.
        assert max(e.points_for, e.points_against) == 21
        assert min(e.points_for, e.points_against) < 21
        assert e.score == e.points_for - e.points_against
        assert e.steps > 0
    scores = np.array([e.score for e in result.episodes])
    s = result.summary()
    assert s["episodes"] == 3
    assert s["mean"] == pytest.approx(scores.mean())
    assert s["std"] == pytest.approx(scores.std())
    assert (s["min"], s["max"]) == (scores.min(), scores.max())
    wins = sum(e.points_for == 21 for e in result.episodes)
    assert s["wins"] == wins and s["win_rate"] == pytest.approx(wins / 3)


def test_cli_prints_summary_lines(small_checkpoint: Path) -> None:
    proc = run_cli("evaluate", str(small_checkpoint), "--episodes", "1", "--greedy")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "episode    1 |" in out
    assert "1 episodes, greedy actions, seed 0" in out
    assert "score  mean" in out and " std " in out and " min " in out and " max " in out
    assert "win rate" in out


def test_float64_checkpoint_evaluates(small_checkpoint: Path, tmp_path: Path) -> None:
    """Checkpoints hold host arrays of either float type, whatever device wrote them."""
    ckpt = checkpoint.load(small_checkpoint)
    ckpt.params = {k: v.astype(np.float64) for k, v in ckpt.params.items()}
    ckpt.cache = {k: v.astype(np.float64) for k, v in ckpt.cache.items()}
    path = checkpoint.save(tmp_path / "f64.npz", ckpt)
    result = evaluate(path, episodes=1, seed=2)
    assert len(result.episodes) == 1
    assert max(result.episodes[0].points_for, result.episodes[0].points_against) == 21


def _bad_checkpoints(tmp: Path, good: Path) -> dict[str, Path]:
    garbage = tmp / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all" * 10)
    torn = tmp / "torn.npz"
    data = good.read_bytes()
    torn.write_bytes(data[: len(data) // 2])
    other = tmp / "other.npz"
    np.savez(other, weights=np.zeros(3))
    folder = tmp / "folder.npz"
    folder.mkdir()
    return {
        "missing": tmp / "nope.npz",
        "garbage": garbage,
        "torn": torn,
        "not pongxp": other,
        "directory": folder,
    }


@pytest.mark.parametrize(
    "command", ["evaluate", pytest.param("video", marks=needs("imageio", "video"))]
)
def test_bad_checkpoint_paths_give_one_line(
    command: str, small_checkpoint: Path, tmp_path: Path
) -> None:
    for name, path in _bad_checkpoints(tmp_path, small_checkpoint).items():
        proc = run_cli(
            command, str(path), *(["-o", str(tmp_path / "v.mp4")] * (command == "video"))
        )
        assert proc.returncode == 2, (name, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (name, proc.stderr)
        assert lines[0].startswith("error: ") and str(path) in lines[0], (name, lines)
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "v.mp4").exists()


def test_bad_episode_count_is_one_line(small_checkpoint: Path) -> None:
    proc = run_cli("evaluate", str(small_checkpoint), "--episodes", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --episodes must be a positive integer, got 0"
