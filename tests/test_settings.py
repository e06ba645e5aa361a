"""Settings: each declared once (``config.setting``), with its flag, help, check,
restore list and docs table derived; and the settings beyond Karpathy's, the
learning-rate schedule, the entropy bonus, Adam and gradient clipping, each
checked like every flag, saved in checkpoints and resumed exactly (the entropy
bonus's gradient is checked against finite differences; Adam's and the
clipping's math against plain loops in test_math.py).
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, copy_run, records, run_cli, weights
from reference import central_differences

from pongxp import backend as backend_mod
from pongxp import checkpoint, cli
from pongxp.backend import DeviceBatch
from pongxp.config import (
    HPARAMS,
    INPUT_SIZE,
    RESTORED,
    SETTINGS,
    ConfigError,
    TrainConfig,
    flag,
    options_table,
)
from pongxp.policy import backward, forward, init_params
from pongxp.returns import discounted_returns, standardize_per_episode
from pongxp.update import policy_gradient

Run = Callable[..., subprocess.CompletedProcess[str]]


def test_the_schedule_goes_from_lr_to_lr_end_by_running_reward() -> None:
    cfg = TrainConfig(learning_rate=3e-3, lr_end=1e-3, lr_end_at=-1.0)
    assert cfg.learning_rate_at(0.0, 0) == 3e-3  # no episode yet: a running reward of 0 is no news
    assert cfg.learning_rate_at(-21.0, 5) == 3e-3
    assert cfg.learning_rate_at(-11.0, 5) == pytest.approx(2e-3)
    assert cfg.learning_rate_at(-1.0, 5) == pytest.approx(1e-3)
    assert cfg.learning_rate_at(5.0, 5) == pytest.approx(1e-3)
    assert TrainConfig(learning_rate=3e-3).learning_rate_at(-5.0, 9) == 3e-3  # no schedule


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"lr_end": 0.0}, "--lr-end must be a finite number > 0"),
        ({"lr_end": float("inf")}, "--lr-end must be"),
        ({"lr_end_at": -21.5}, "--lr-end-at must be in (-21, 21]"),
        ({"lr_end_at": 30.0}, "--lr-end-at must be"),
        ({"entropy_bonus": -0.1}, "--entropy-bonus must be from 0 to 1"),
        ({"entropy_bonus": float("nan")}, "--entropy-bonus must be"),
        ({"clip_norm": -1.0}, "--clip-norm must be a finite number >= 0 (0: off), got -1.0"),
        ({"clip_norm": float("inf")}, "--clip-norm must be"),
        ({"optimizer": "sgd"}, "--optimizer must be one of rmsprop, adam, got 'sgd'"),
    ],
)
def test_bad_values_are_refused(changes: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(**changes).validate(check_env=False)
    assert needle in str(err.value)


def test_batch_standardisation_uses_the_whole_batch() -> None:
    """--standardize batch: the advantage is the batch's returns standardised as
    one; per episode, each episode's on its own (they differ)."""
    be = backend_mod.select("cpu", "float64", sparse=False)
    rng = np.random.default_rng(7)
    steps = 50
    x = rng.choice([-1.0, 0.0, 1.0], p=[0.05, 0.9, 0.05], size=(steps, INPUT_SIZE))
    ups = (rng.random(steps) < 0.5).astype(np.float64)
    rewards = np.zeros(steps)
    rewards[[9, 24, 30, 49]] = [1.0, 1.0, -1.0, -1.0]
    episode_id = (np.arange(steps) >= 25).astype(np.int32)
    batch = DeviceBatch(frames=x, ups=ups, rewards=rewards, episode_id=episode_id, num_episodes=2)
    params = init_params(rng, 8, INPUT_SIZE)
    returns = discounted_returns(rewards, episode_id, 0.99, be.xp)
    whole = (returns - returns.mean()) / returns.std()
    hidden, p = forward(params, x, be.xp)
    want = backward(params, x, hidden, (ups - p) * whole, be.xp)
    got = policy_gradient(params, batch, 0.99, be.xp, standardize="batch")
    per_episode = policy_gradient(params, batch, 0.99, be.xp)
    for k in ("W1", "W2"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-12)
    assert not np.allclose(per_episode["W2"], got["W2"])


def test_bad_flag_is_one_line(train_cli: Run) -> None:
    proc = train_cli("--entropy-bonus", "-1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --entropy-bonus must be from 0 to 1, got -1.0"


def test_bad_optimizer_flags_name_the_flag(train_cli: Run) -> None:
    proc = train_cli("--clip-norm", "-1")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == "error: --clip-norm must be a finite number >= 0 (0: off), got -1.0"
    )
    proc = train_cli("--optimizer", "sgd")  # argparse's own refusal of a choice
    assert proc.returncode == 2
    assert "--optimizer" in proc.stderr and "invalid choice: 'sgd'" in proc.stderr


def test_lr_end_at_without_lr_end_is_refused(
    capsys: pytest.CaptureFixture[str], no_actors: None, small_checkpoint: Path, tmp_path: Path
) -> None:
    """Issue 34: it was accepted and did nothing. On a resume, the checkpoint's
    --lr-end counts (the session's small checkpoint has none)."""
    files = ["--run", str(tmp_path / "r")]
    assert cli.train_main(["--lr-end-at", "5", "--device", "cpu", *files]) == 2
    assert capsys.readouterr().err == (
        "error: --lr-end-at says where the --lr-end schedule ends, and this run has no "
        "--lr-end: add --lr-end LR, or drop --lr-end-at\n"
    )
    assert not (tmp_path / "r").exists()
    parser = argparse.ArgumentParser()
    cli.add_train_arguments(parser)
    args = parser.parse_args(["--lr-end", "1e-3", "--lr-end-at", "5", *files])
    assert cli.config_from_args(args).lr_end_at == 5.0
    args = parser.parse_args(["--resume", str(small_checkpoint), "--lr-end-at", "5", *files])
    with pytest.raises(ConfigError, match="this run has no --lr-end"):
        cli.config_from_args(args)


def test_a_schedule_that_blows_the_weights_up_names_lr_end_in_one_line(train_cli: Run) -> None:
    """Issue 34: the error said "try a smaller --lr" (--lr-end had raised the rate) and
    came after NumPy's RuntimeWarning lines from the rollout worker."""
    proc = train_cli("--hidden", "8", "--batch-size", "1", "--episodes", "20", "--lr-end",
                     "1e30", "--lr-end-at", "-20.99", "--quiet")  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: weights or gradients became NaN"), lines
    assert lines[0].endswith(
        "try a smaller --lr-end (its schedule had raised the rate to 1e+30, from --lr 0.0001)"
    )


def test_entropy_bonus_gradient_matches_finite_differences() -> None:
    """d/dW of sum_t A_t log pi(a_t) + beta * sum_t H(p_t), by central differences."""
    be = backend_mod.select("cpu", "float64", sparse=False)
    xp = be.xp
    rng = np.random.default_rng(4)
    steps, hidden, beta = 60, 8, 0.3
    x = rng.choice([-1.0, 0.0, 1.0], p=[0.05, 0.9, 0.05], size=(steps, INPUT_SIZE))
    ups = (rng.random(steps) < 0.5).astype(np.float64)
    rewards = np.zeros(steps)
    rewards[[19, 44, 59]] = [1.0, -1.0, 1.0]
    episode_id = np.zeros(steps, dtype=np.int64)
    params = {k: v * 3 for k, v in init_params(rng, hidden, INPUT_SIZE).items()}
    batch = DeviceBatch(frames=x, ups=ups, rewards=rewards, episode_id=episode_id, num_episodes=1)
    advantage = standardize_per_episode(
        discounted_returns(rewards, episode_id, 0.99, xp), episode_id, 1, xp
    )

    def objective(p: dict[str, np.ndarray]) -> float:
        _, prob = forward(p, x, xp)
        logp = ups * np.log(prob) + (1 - ups) * np.log(1 - prob)
        entropy = -(prob * np.log(prob) + (1 - prob) * np.log(1 - prob))
        return float(np.sum(advantage * logp) + beta * np.sum(entropy))

    grads = policy_gradient(params, batch, 0.99, xp, entropy_bonus=beta)
    plain = policy_gradient(params, batch, 0.99, xp)
    assert not np.allclose(grads["W2"], plain["W2"])  # the bonus does something
    active = np.flatnonzero(np.any(x != 0, axis=0))
    checks = [("W2", (i,)) for i in range(hidden)]
    checks += [("W1", (int(rng.integers(hidden)), int(c))) for c in rng.choice(active, 20)]
    numeric = central_differences(objective, params, checks)
    for (name, index), want in zip(checks, numeric, strict=True):
        assert grads[name][index] == pytest.approx(want, rel=1e-5, abs=1e-7), (name, index)


SMALL = ("--hidden", "16", "--batch-size", "2", "--seed", "5", "--lr", "3e-3",
         "--lr-end", "1e-3", "--lr-end-at", "-20.5", "--entropy-bonus", "0.01",
         "--standardize", "batch")  # fmt: skip


def test_schedule_and_bonus_are_saved_and_resumed_exactly(train_cli: Run, tmp_path) -> None:
    straight = train_cli("--episodes", "6", *SMALL, name="straight")
    assert straight.returncode == 0, straight.stderr
    split = train_cli("--episodes", "2", *SMALL, name="split")
    assert split.returncode == 0, split.stderr
    saved = checkpoint.load(tmp_path / "split").config
    assert (saved.lr_end, saved.lr_end_at, saved.entropy_bonus) == (1e-3, -20.5, 0.01)
    assert saved.standardize == "batch"
    # The resume takes them from the checkpoint.
    resumed = run_cli("train.py", "--resume", str(tmp_path / "split"), "--episodes", "6",
                      "--device", "cpu")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert records(tmp_path / "straight") == records(tmp_path / "split")
    want = weights(tmp_path / "straight")
    for key, value in weights(tmp_path / "split").items():
        np.testing.assert_array_equal(value, want[key])
    # Without the schedule and bonus the run differs.
    other = train_cli("--episodes", "6", *SMALL[:6], name="plain")
    assert other.returncode == 0, other.stderr
    assert not np.array_equal(weights(tmp_path / "plain")["W1"], want["W1"])


ADAM = ("--hidden", "16", "--batch-size", "2", "--seed", "5", "--optimizer", "adam",
        "--clip-norm", "1.5")  # fmt: skip


def test_adam_with_clipping_is_saved_and_resumed_exactly(train_cli: Run, tmp_path) -> None:
    """A run stopped after its first batch and resumed == the same run straight
    through: weights, Adam's moments (``weights`` holds them as cache_m_W1...)
    and its update count."""
    straight = train_cli("--episodes", "4", *ADAM, name="straight")
    assert straight.returncode == 0, straight.stderr
    split = train_cli("--episodes", "2", *ADAM, name="split")
    assert split.returncode == 0, split.stderr
    saved = checkpoint.load(tmp_path / "split")
    assert (saved.config.optimizer, saved.config.clip_norm, saved.updates) == ("adam", 1.5, 1)
    assert sorted(saved.cache) == ["m_W1", "m_W2", "v_W1", "v_W2"]
    resumed = run_cli("train.py", "--resume", str(tmp_path / "split"), "--episodes", "4",
                      "--device", "cpu")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "note:" not in resumed.stdout  # nothing changed
    assert records(tmp_path / "straight") == records(tmp_path / "split")
    want = weights(tmp_path / "straight")
    got = weights(tmp_path / "split")
    assert sorted(got) == sorted(want) == [
        "W1", "W2", "cache_m_W1", "cache_m_W2", "cache_v_W1", "cache_v_W2"
    ]  # fmt: skip
    for key, value in got.items():
        np.testing.assert_array_equal(value, want[key])
    assert checkpoint.load(tmp_path / "split").updates == 2
    assert checkpoint.load(tmp_path / "straight").updates == 2


def test_a_resume_that_changes_the_optimizer_starts_its_state_anew(
    small_checkpoint, tmp_path
) -> None:
    """RMSProp to Adam and back: a note says so, the new optimizer's state starts
    from zero at update 0 (Adam's bias correction from t = 1 again)."""
    copy_run(small_checkpoint, tmp_path / "a")
    assert checkpoint.load(tmp_path / "a").updates == 2  # batch 1, 2 episodes
    to_adam = run_cli("train.py", "--resume", str(tmp_path / "a"), "--episodes", "3",
                      "--optimizer", "adam", "--device", "cpu")  # fmt: skip
    assert to_adam.returncode == 0, to_adam.stderr
    assert "note: --optimizer adam replaces the run's rmsprop: its state starts from zero here" \
        in to_adam.stdout  # fmt: skip
    ckpt = checkpoint.load(tmp_path / "a")
    assert ckpt.config.optimizer == "adam" and ckpt.updates == 1
    assert sorted(ckpt.cache) == ["m_W1", "m_W2", "v_W1", "v_W2"]
    # One step from zero moments: v = 0.001 g**2, m = 0.1 g, so m**2 = 10 v.
    for name in ("W1", "W2"):
        m, v = ckpt.cache[f"m_{name}"].astype(np.float64), ckpt.cache[f"v_{name}"]
        np.testing.assert_allclose(m * m, 10 * v, rtol=1e-4, atol=1e-30)
        assert np.abs(v).max() > 0
    # The resume keeps Adam unless told; back to RMSProp starts a zero cache.
    back = run_cli("train.py", "--resume", str(tmp_path / "a"), "--episodes", "4",
                   "--optimizer", "rmsprop", "--device", "cpu")  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert "note: --optimizer rmsprop replaces the run's adam: its state starts from zero here" \
        in back.stdout  # fmt: skip
    ckpt = checkpoint.load(tmp_path / "a")
    assert ckpt.config.optimizer == "rmsprop" and ckpt.updates == 1
    assert sorted(ckpt.cache) == ["W1", "W2"] and np.abs(ckpt.cache["W1"]).max() > 0


def test_the_optimizer_settings_are_hparams_and_restored() -> None:
    assert {"optimizer", "clip_norm"} <= set(HPARAMS) <= set(RESTORED)
    tensorboard_log = pytest.importorskip("pongxp.tensorboard_log")
    pytest.importorskip("tensorboardX")
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    summary = tensorboard_log._hparams(TrainConfig(optimizer="adam", clip_norm=2.5))
    content = summary.value[0].metadata.plugin_data.content
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["optimizer"].string_value == "adam"
    assert hparams["clip_norm"].number_value == 2.5


# -- each setting is declared once (config.setting); the rest is derived ---------------

OPTIONS_MARK = "<!-- options table: made from pongxp/config.py's declarations"


def test_the_docs_options_table_is_the_declarations() -> None:
    """The options table of the docs (README.md or a page of docs/) is exactly what
    the declarations make: a setting added, removed or reworded fails here until
    the table is made again (``python -c 'from pongxp.config import options_table;
    print(options_table())'``)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = [p for p in pages if OPTIONS_MARK in p.read_text()]
    assert len(found) == 1, f"one page holds the options table, not {found}"
    after = found[0].read_text().split(OPTIONS_MARK, 1)[1].split("\n", 1)[1]
    table = after.split("\n\n", 1)[0].strip()
    assert table == options_table(), f"{found[0]}'s options table is out of date"


def test_help_shows_every_setting_with_its_declared_words() -> None:
    import argparse

    from pongxp import cli

    parser = argparse.ArgumentParser()
    cli.add_train_arguments(parser)
    text = re.sub(r"\s+", " ", parser.format_help())
    for f in SETTINGS:
        assert f"--{flag(f.name)}" in text, f.name
        assert re.sub(r"\s+", " ", f.metadata["help"]) in text, f.name


@pytest.mark.parametrize("name", [f.name for f in SETTINGS if f.metadata["low"] is not None])
def test_every_bound_is_checked_in_one_line_naming_the_flag(name: str) -> None:
    meta = TrainConfig.__dataclass_fields__[name].metadata
    bad = float("nan") if meta["kind"] is float else meta["low"] - 1
    with pytest.raises(ConfigError) as err:
        TrainConfig(**{name: bad}).validate(check_env=False)
    message = str(err.value)
    assert message.startswith(f"--{flag(name)} must be ") and "\n" not in message, message


def test_a_resume_restores_the_declared_settings_and_no_others() -> None:
    assert "batch_steps" in RESTORED and "learning_rate" in RESTORED and "episodes" in RESTORED
    for where in ("device", "num_envs", "actors", "ray_address", "run", "resume"):
        assert where not in RESTORED
    assert set(HPARAMS) <= set(RESTORED)
    assert not hasattr(TrainConfig(), "extra")


def test_the_package_map_names_every_module() -> None:
    import pongxp

    modules = sorted(p.stem for p in (ROOT / "pongxp").glob("*.py") if p.stem[0] != "_")
    listed = re.findall(r"^- ``(\w+)``", pongxp.__doc__ or "", flags=re.MULTILINE)
    assert sorted(listed) == modules


@pytest.mark.parametrize("removed", ["--checkpoint", "--metrics", "--overwrite"])
def test_a_flag_of_the_flat_files_says_what_replaced_it(
    removed: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    value = [] if removed == "--overwrite" else [str(tmp_path / "x.npz")]
    with pytest.raises(SystemExit) as exit_info:
        cli.train_main([removed, *value, "--device", "cpu"])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"train.py: error: {removed} is gone: ") and "--run" in last, last
    assert list(tmp_path.iterdir()) == []
