"""Batches of steps (``--batch-steps``): shares that end at a point, games carried
from batch to batch, on the real emulator.

- the rule: a share is at least its quota and ends at a point boundary;
- a game played in shares, its stream moved between actors through JSON at
  every pause, is the same whoever plays each share (direct ALE loop and
  ``env.step``), and its first share is the game played whole;
- train.py: the same run for 1 or 2 actors, processes or Ray, and after a
  resume, kill -9 or SIGTERM from a checkpoint holding paused games; each
  episode logged once, when it ends; the run ends at exactly --episodes;
- damaged paused games in a checkpoint are refused in one line.
"""

from __future__ import annotations

import dataclasses
import json
import random
import signal
from itertools import pairwise
from pathlib import Path
from typing import Any

import array_api_compat.numpy as xp
import numpy as np
import pytest
from conftest import (
    assert_same_episode,
    error_line,
    finish,
    logged,
    needs,
    records,
    run,
    run_cli,
    same_run,
    start,
    train_argv,
    wait_for,
    weights,
)

from pongxp import checkpoint
from pongxp.batch import HostBatch
from pongxp.config import INPUT_SIZE, ConfigError, TrainConfig
from pongxp.policy import init_params
from pongxp.rollout import Actor
from pongxp.slot_share import episode_allowances, share_ends, slot_quota

# Two slots of 600 steps: the untrained policy's games (~1,000 steps) span batches.
STEPS = ("--hidden", "16", "--batch-size", "2", "--batch-steps", "1200", "--seed", "3",
         "--device", "cpu", "--quiet")  # fmt: skip


def test_quota_and_where_a_share_ends() -> None:
    assert slot_quota(0, 10) is None  # whole episodes
    assert slot_quota(34_000, 20) == 1_700
    assert slot_quota(1_001, 2) == 501  # every slot plays at least S / slots
    # Whole episodes: only the episode's end ends a share.
    assert not share_ends(5_000, None, 1, False)
    assert share_ends(3, None, 0, True)
    # A batch of steps: the first point boundary at or after the quota.
    assert not share_ends(99, 100, -1, False)  # a point ends before the quota
    assert not share_ends(100, 100, 0, False)  # quota reached mid-point
    assert share_ends(100, 100, 1, False)
    assert share_ends(140, 100, -1, False)
    assert share_ends(120, 100, 0, True)  # a truncated episode ends with reward 0
    assert not share_ends(50, 100, 0, True)  # an early game over: a new game follows


def test_a_batch_ends_no_more_episodes_than_the_run_needs() -> None:
    assert episode_allowances(100, 20) == [5] * 20  # far from the end: no slot's share is cut
    assert episode_allowances(5, 2) == [3, 2]
    assert episode_allowances(3, 20) == [1, 1, 1]  # the other slots do not play
    assert episode_allowances(1, 1) == [1]


def test_batch_steps_is_checked() -> None:
    with pytest.raises(ConfigError, match="--batch-steps must be an integer from 0"):
        TrainConfig(batch_steps=-1).validate(check_env=False)
    with pytest.raises(ConfigError, match="gives each of the 10 slots"):
        TrainConfig(batch_steps=5).validate(check_env=False)
    TrainConfig(batch_steps=10).validate(check_env=False)


def _weights(hidden: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    w = init_params(np.random.default_rng(seed), hidden, INPUT_SIZE)
    return {k: v.astype(np.float32) for k, v in w.items()}


def _actors(count: int, direct: bool = True) -> list[Actor]:
    w = _weights()
    actors = [Actor("Pong-v0", 0, xp) for _ in range(count)]
    for actor in actors:
        actor.direct = actor.direct and direct
        actor.set_weights(w["W1"], w["W2"])
    return actors


def _in_shares(order: list[Actor], quota: int, games: int) -> tuple[list, list, list]:
    """Play ``games`` games of stream seed 21 in shares of ``quota``, share k on
    ``order[k % len(order)]`` from the stream the last share saved, through
    JSON as in a checkpoint. Returns (pieces, ended episodes, streams)."""
    stream: dict[str, Any] = {"seed": 21}
    pieces, ended, streams = [], [], []
    for turn in range(1000):
        actor = order[turn % len(order)]
        actor.load_stream(json.loads(json.dumps(stream)))
        share = actor.play_share(quota)
        stream = actor.state()
        # At least the quota, ending on a point (or the game's end).
        assert share.batch.num_steps >= quota
        assert share.batch.rewards[-1] != 0 or share.ended_at[-1:] == [share.batch.num_steps]
        assert share.batch.num_episodes == len(share.ended) + ("episode" in stream)
        pieces.extend(share.batch.episodes())
        ended.extend(share.ended)
        streams.append(stream)
        if len(ended) >= games:
            return pieces, ended, streams
    raise AssertionError("the games did not end")


@pytest.mark.parametrize("direct", [True, False], ids=["ale", "env-step"])
def test_a_game_in_shares_is_the_same_whoever_plays_each_share(direct: bool) -> None:
    """Two games in shares of ~150 steps: on one actor, alternating between two,
    and on a third that played another game first (its emulator's history
    differs, e.g. the action sticky actions would repeat), all step for step
    the same, with the same streams; and up to its first pause, the game
    played whole."""
    one, a, b, other = _actors(4, direct)
    other.load_stream({"seed": 99})
    other.play()
    reference = _in_shares([one], 150, 2)
    for order in ([a, b], [other, a]):
        pieces, ended, streams = _in_shares(order, 150, 2)
        assert streams == reference[2]
        assert [(e.reward, e.steps) for e in ended] == [(e.reward, e.steps) for e in reference[1]]
        for got, want in zip(pieces, reference[0], strict=True):
            assert_same_episode(got, want)
    pieces, ended, _ = reference
    assert all(e.steps > 3 * 150 for e in ended)  # each game was cut several times
    one.load_stream({"seed": 21})
    whole, _ = one.play()
    first = pieces[0]
    assert_same_episode(first, _first_steps(whole, first.num_steps))
    for actor in (one, a, b, other):
        actor.close()


def _first_steps(game: HostBatch, steps: int) -> HostBatch:
    nnz = game.indptr[steps]
    return dataclasses.replace(
        game,
        indptr=game.indptr[: steps + 1],
        cols=game.cols[:nnz],
        signs=game.signs[:nnz],
        ups=game.ups[:steps],
        rewards=game.rewards[:steps],
        lengths=np.array([steps], dtype=np.int64),
    )


def test_play_finishes_a_paused_game() -> None:
    """A whole-episode batch after a batch of steps (a resume without
    --batch-steps) plays the paused game to its end, counted in full, the same
    on any actor."""
    a, b, c = _actors(3)
    a.load_stream({"seed": 4})
    first = a.play_share(200)
    assert first.ended == [] and first.batch.num_steps >= 200
    paused = a.state()
    ends = []
    for actor in (b, c):
        actor.load_stream(json.loads(json.dumps(paused)))
        rest, stats = actor.play()
        assert stats.steps == first.batch.num_steps + rest.num_steps
        assert stats.reward == first.batch.total_reward + rest.total_reward
        assert "episode" not in actor.state()
        ends.append((rest, stats))
    assert_same_episode(ends[0][0], ends[1][0])
    for actor in (a, b, c):
        actor.close()


def _train(out: Path, name: str, *flags: str) -> str:
    code, stdout, err = run(train_argv(out / name, *STEPS, *flags))
    assert code == 0, err
    return stdout


def _assert_same(out: Path, name: str, reference: str) -> None:
    assert records(out / name) == records(out / reference)
    want = weights(out / reference)
    for key, value in weights(out / name).items():
        np.testing.assert_array_equal(value, want[key])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six episodes in batches of 1,200 steps with one actor; its directory."""
    out = tmp_path_factory.mktemp("steps")
    _train(out, "one", "--episodes", "6", "--num-envs", "1")
    return out


def test_the_log_has_each_episode_once_in_step_order(reference: Path) -> None:
    log = (reference / "one" / "metrics.jsonl").read_text()
    recs = [json.loads(line) for line in log.splitlines()]
    assert [r["episode"] for r in recs][:6] == [1, 2, 3, 4, 5, 6]
    steps = [r["total_steps"] for r in recs]
    assert steps == sorted(steps) and steps[0] >= recs[0]["steps"]
    saved = checkpoint.load(reference / "one")
    # The slots may have played on after the last logged episode: the checkpoint knows both.
    assert saved.log_steps == steps[-1] <= saved.total_steps
    assert any("episode" in s for s in saved.streams)
    assert len(recs) == 6  # exactly --episodes
    assert saved.config.batch_steps == 1200
    # Every episode is one game to 21 points (the untrained agent loses them).
    assert all(r["reward"] <= -15 and r["steps"] > 600 for r in recs)


def test_two_actors_play_the_same_run(reference: Path) -> None:
    _train(reference, "two", "--episodes", "6", "--num-envs", "2")
    _assert_same(reference, "two", "one")


@needs("ray", "ray")
def test_ray_actors_play_the_same_run(reference: Path, ray_address: str) -> None:
    _train(reference, "ray", "--episodes", "6", "--num-envs", "2", "--actors", "ray",
           "--ray-address", ray_address)  # fmt: skip
    _assert_same(reference, "ray", "one")


def test_resume_from_paused_games_is_exact(reference: Path) -> None:
    """Stopped at a batch boundary (SIGTERM after the first save) with games paused,
    then resumed with one actor: the run is the one never stopped. (A run stopped
    by a smaller --episodes is not: its last batches were cut to that target.)"""
    ckpt = reference / "split" / "checkpoint.npz"
    proc = start(train_argv(ckpt, *STEPS, "--episodes", "6", "--num-envs", "2",
                            "--checkpoint-every", "1"))  # fmt: skip
    wait_for(lambda: ckpt.exists() and checkpoint.load(ckpt).episode >= 1, proc)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 143, err
    paused = checkpoint.load(ckpt)
    assert paused.episode < 6 and any("episode" in s for s in paused.streams)
    code, _, err = run(train_argv(reference / "split", "--resume",
                                  str(reference / "split"), "--episodes", "6",
                                  "--device", "cpu", "--num-envs", "1", "--quiet"))  # fmt: skip
    assert code == 0, err
    _assert_same(reference, "split", "one")


def test_kill_9_and_sigterm_resume_to_the_same_run(tmp_path: Path) -> None:
    """kill -9 at random moments after a save, then SIGTERM, each resumed: the
    run ends as one never interrupted, its episodes logged once each."""
    rng = random.Random(7)
    ckpt, metrics = tmp_path / "run" / "checkpoint.npz", tmp_path / "run" / "metrics.jsonl"
    flags = (*STEPS, "--checkpoint-every", "1", "--num-envs", "2")
    target = 8
    for trial, sig in enumerate((signal.SIGKILL, signal.SIGKILL, signal.SIGTERM)):
        resume = ("--resume", str(ckpt)) if ckpt.exists() else ()
        before = checkpoint.load(ckpt).episode if ckpt.exists() else 0
        proc = start(train_argv(ckpt, *flags, *resume, "--episodes", str(target)))
        wait_for(lambda b=before: ckpt.exists() and checkpoint.load(ckpt).episode > b, proc)
        if trial < 2:
            wait_for(lambda b=before: logged(metrics) > b + rng.choice((1, 2)), proc)
        proc.send_signal(sig)
        code, out, err = finish(proc)
        assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig), err
        if sig == signal.SIGTERM:
            assert "Traceback" not in err, err
            assert out.strip().splitlines()[-1].startswith("interrupted: saved episode")
        saved = checkpoint.load(ckpt)
        assert saved.episode < target, "the run ended before it was interrupted"
    code, _, err = run(train_argv(ckpt, *flags, "--resume", str(ckpt), "--episodes", str(target)))
    assert code == 0, err
    recs = records(metrics)
    episodes = [r["episode"] for r in recs]
    assert episodes == list(range(1, len(episodes) + 1)) and len(episodes) >= target
    clean = tmp_path / "clean"
    code, _, err = run(train_argv(clean, *flags, "--episodes", str(target)))
    assert code == 0, err
    same_run(ckpt, clean)
    assert recs == records(clean)


def test_a_resume_with_fewer_slots_says_what_it_drops(reference: Path) -> None:
    proc = run_cli("train.py", "--resume", str(reference / "one"), "--episodes", "7",
                   "--batch-size", "1", "--run", str(reference / "fewer"),
                   "--device", "cpu")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    paused = sum("episode" in s for s in checkpoint.load(reference / "one").streams[1:])
    if paused:
        assert "in progress there will not be finished or logged" in proc.stdout


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (lambda e: e.update(steps=-3), "steps"),
        (lambda e: e.update(reward="-3"), "reward"),
        (lambda e: e["frames"].pop("next"), "frames"),
        (lambda e: e["frames"]["previous"].update(data="not base64!"), "data"),
        (lambda e: e["frames"]["previous"].update(shape=[80, 80]), "shape"),
        (lambda e: e["frames"]["foreground"].update(dtype="|O"), "dtype"),
    ],
    ids=["steps", "reward", "frames", "data", "shape", "dtype"],
)
def test_a_damaged_paused_game_is_refused_in_one_line(
    reference: Path, tmp_path: Path, damage: Any, what: str
) -> None:
    saved = checkpoint.load(reference / "one")
    slot = next(i for i, s in enumerate(saved.streams) if "episode" in s)
    damage(saved.streams[slot]["episode"])
    bad = tmp_path / "bad.npz"
    checkpoint.save(bad, saved)
    before = bad.read_bytes()
    proc = run_cli("train.py", "--resume", str(bad), "--episodes", "9", "--device", "cpu")
    assert proc.returncode == 2
    assert error_line(proc) == f"error: {bad}: the rollout state of slot {slot} is damaged", what
    assert bad.read_bytes() == before


def test_batch_steps_from_turns_whole_episodes_into_steps() -> None:
    cfg = TrainConfig(batch_size=20, batch_steps=34_000, batch_steps_from=-5.0)
    assert cfg.quota_at(0.0, 0) is None  # no episode yet
    assert cfg.quota_at(-5.01, 100) is None
    assert cfg.quota_at(-5.0, 100) == 1_700
    assert TrainConfig(batch_size=20, batch_steps=34_000).quota_at(-21.0, 0) == 1_700
    assert TrainConfig(batch_size=20).quota_at(3.0, 100) is None
    with pytest.raises(ConfigError, match="--batch-steps-from needs --batch-steps"):
        TrainConfig(batch_steps_from=-5.0).validate(check_env=False)
    with pytest.raises(ConfigError, match="--batch-steps-from must be from -21 to 21"):
        TrainConfig(batch_steps=100, batch_steps_from=-30.0).validate(check_env=False)


def test_a_run_that_turns_to_steps_resumes_exactly(tmp_path: Path) -> None:
    """Whole episodes until the running reward reaches -21, that is for the
    first batch only, then batches of steps: a run cut before the turn and
    resumed is the same run, and it did turn."""
    flags = (*STEPS, "--batch-steps-from", "-21", "--num-envs", "2")
    code, _, err = run(train_argv(tmp_path / "straight", *flags, "--episodes", "7"))
    assert code == 0, err
    code, _, err = run(train_argv(tmp_path / "split", *flags, "--episodes", "2"))
    assert code == 0, err
    assert not any("episode" in s for s in checkpoint.load(tmp_path / "split").streams)
    code, _, err = run(train_argv(tmp_path / "split", "--resume", str(tmp_path / "split"),
                                  "--episodes", "7", "--device", "cpu", "--quiet"))  # fmt: skip
    assert code == 0, err
    _assert_same(tmp_path, "split", "straight")
    saved = checkpoint.load(tmp_path / "straight")
    assert saved.config.batch_steps_from == -21
    # The turn happened: games spanned batches. (In batches of whole episodes each
    # episode's total_steps is the one before it plus its own steps.)
    recs = records(tmp_path / "straight.jsonl")
    assert any(b["total_steps"] - a["total_steps"] != b["steps"] for a, b in pairwise(recs))


def test_a_run_ends_at_exactly_its_episodes(tmp_path: Path) -> None:
    """Issue 34: --episodes 3 with batches of 10,000 steps a slot (about ten games
    each) ended some twenty episodes; now each slot stops at its share of the three."""
    ckpt = tmp_path / "run.npz"
    code, out, err = run(train_argv(ckpt, "--hidden", "8", "--batch-size", "2",
                                    "--batch-steps", "20000", "--episodes", "3",
                                    "--device", "cpu", "--num-envs", "2"))  # fmt: skip
    assert code == 0, err
    assert [r["episode"] for r in records(ckpt.with_suffix(".jsonl"))] == [1, 2, 3]
    assert "\ndone: 3 episodes, " in out
    saved = checkpoint.load(ckpt)
    assert saved.episode == 3 and saved.log_steps == saved.total_steps < 20_000
