"""Agent files (weights only): written from a checkpoint, played by pongxp, and
played the same by a plain program that knows nothing of pongxp but the note
stored in the file."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import needs, run_cli

from pongxp import checkpoint
from pongxp.evaluate import load_actor


def _preprocess(screen: np.ndarray) -> np.ndarray:
    """The rule the agent note states, written plainly: (6400,) float32 of 0/1."""
    img = screen[35:195:2, ::2, 0].copy()
    img[(img == 144) | (img == 109)] = 0
    return (img != 0).astype(np.float32).ravel()


def play_plainly(w1: np.ndarray, w2: np.ndarray, seed: int) -> tuple[list[int], int]:
    """One greedy game of Pong-v0 through env.step: the actions taken and the score."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make("Pong-v0")
    env.reset(seed=seed)
    screen, _ = env.reset()
    previous = _preprocess(screen)
    actions, score = [], 0
    while True:
        current = _preprocess(screen)
        h = np.maximum(w1 @ (current - previous), 0)
        previous = current
        p_up = 1 / (1 + np.exp(-(w2 @ h)))
        action = 2 if p_up >= 0.5 else 3
        screen, reward, terminated, truncated, _ = env.step(action)
        actions.append(action)
        score += int(reward)
        if terminated or truncated:
            env.close()
            return actions, score


@pytest.fixture(scope="module")
def agent_file(small_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("agent") / "agent.npz"
    checkpoint.save_agent(out, checkpoint.load(small_checkpoint))
    return out


def test_agent_file_holds_float32_weights_and_how_to_use_them(
    agent_file: Path, small_checkpoint: Path
) -> None:
    with np.load(agent_file) as data:
        assert data["W1"].dtype == np.float32 and data["W1"].shape == (16, 6400)
        assert data["W2"].dtype == np.float32 and data["W2"].shape == (16,)
        assert "cache_W1" not in data.files and "streams" not in data.files
        assert "sigmoid(W2 @ h)" in str(data["agent"])
    full = checkpoint.load(small_checkpoint)
    agent = checkpoint.load(agent_file)
    assert agent.agent and not full.agent
    np.testing.assert_array_equal(agent.params["W1"], full.params["W1"].astype(np.float32))
    assert (agent.episode, agent.config.hidden) == (full.episode, 16)


def test_a_plain_player_plays_the_agent_as_pongxp_does(agent_file: Path) -> None:
    with np.load(agent_file) as data:
        w1, w2 = data["W1"], data["W2"]
    actions, score = play_plainly(w1, w2, seed=3)
    actor, _ = load_actor(agent_file, seed=3)
    actor.direct = False  # the same env.step path; the direct loop is tested equal to it
    episode, stats = actor.play(greedy=True)
    actor.close()
    assert stats.reward == score
    assert [2 if up else 3 for up in episode.ups] == actions


def test_agent_file_cannot_be_resumed(agent_file: Path, tmp_path: Path) -> None:
    proc = run_cli("train.py", "--resume", str(agent_file), "--episodes", "5",
                   "--run", str(tmp_path / "r"))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "is an agent file" in lines[0], proc.stderr


def export_agent(small_checkpoint: Path, out: Path) -> None:
    proc = run_cli("export", str(small_checkpoint), str(out))
    assert proc.returncode == 0, proc.stderr
    assert "trained 2 episodes" in proc.stdout and out.stat().st_size < 1_000_000


def test_export_then_evaluate_the_agent_file(small_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "pretrained" / "pong.npz"
    export_agent(small_checkpoint, out)
    again = run_cli("export", str(small_checkpoint), str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert run_cli("export", str(small_checkpoint), str(tmp_path / "x.pt")).returncode == 2

    evaluated = run_cli("evaluate", str(out), "--episodes", "1", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["trained_episodes"] == 2
    assert sorted(p.name for p in out.parent.iterdir()) == ["pong.npz"]


@needs("imageio", "video")
@needs("imageio_ffmpeg", "video")
def test_video_from_the_agent_file(
    small_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # video's default output goes to runs/ under here
    out = tmp_path / "pretrained" / "pong.npz"
    export_agent(small_checkpoint, out)
    video = run_cli("video", str(out), "--max-seconds", "0.5")
    assert video.returncode == 0, video.stderr
    assert (tmp_path / "runs" / "pong.mp4").stat().st_size > 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["pong.npz"]
