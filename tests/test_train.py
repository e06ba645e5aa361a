"""train.py end to end on the real emulator: output, logs, determinism, resume, errors."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, hashes, records, run_cli, run_cli_without, weights

from pongxp import checkpoint, cli
from pongxp.backend import gpu_available
from pongxp.config import usable_cores

Run = Callable[..., subprocess.CompletedProcess[str]]
SMALL = ("--hidden", "16", "--batch-size", "2", "--seed", "5")


def test_help_documents_every_flag() -> None:
    proc = run_cli("train.py", "--help")
    assert proc.returncode == 0
    for flag in ("--episodes", "--batch-size", "--lr", "--gamma", "--decay-rate", "--hidden",
                 "--seed", "--env-id", "--device", "--dtype", "--run", "--resume",
                 "--checkpoint-every", "--tensorboard", "--num-envs", "--keep"):  # fmt: skip
        assert flag in proc.stdout, flag
    assert "float32" in proc.stdout and "Pong-v0" in proc.stdout


def test_short_run_prints_logs_and_checkpoints(train_cli: Run, tmp_path: Path) -> None:
    proc = train_cli("--episodes", "2", *SMALL)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("episode")]
    assert len(lines) == 2
    for word in ("reward", "running", "steps", "steps/s"):
        assert word in lines[0]
    log = (tmp_path / "run" / "metrics.jsonl").read_text()
    recs = [json.loads(line) for line in log.splitlines()]
    assert [r["episode"] for r in recs] == [1, 2]
    for r in recs:
        assert -21 <= r["reward"] <= 21 and r["steps"] > 100 and r["steps_per_s"] > 0
    # The running reward starts at the first episode's reward, then moves 1% a step.
    assert recs[0]["running_reward"] == recs[0]["reward"]
    assert recs[1]["running_reward"] == pytest.approx(
        0.99 * recs[0]["reward"] + 0.01 * recs[1]["reward"]
    )
    ckpt = checkpoint.load(tmp_path / "run")
    assert ckpt.episode == 2 and ckpt.params["W1"].shape == (16, 6400)
    assert ckpt.params["W1"].dtype == np.float32
    assert ckpt.total_steps == sum(r["steps"] for r in recs)
    # The update moved the weights away from the seeded initialisation.
    init = np.random.default_rng(5).standard_normal((16, 6400)) / 80
    assert not np.allclose(ckpt.params["W1"], init)
    assert np.abs(ckpt.cache["W1"]).max() > 0


def test_same_seed_is_bit_identical(train_cli: Run, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert train_cli("--episodes", "3", *SMALL, name=name).returncode == 0
    assert records(tmp_path / "a" / "metrics.jsonl") == records(tmp_path / "b" / "metrics.jsonl")
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])
    # A different seed gives a different run.
    assert train_cli("--episodes", "3", *SMALL[:-1], "6", name="c").returncode == 0
    assert not np.array_equal(weights(tmp_path / "c")["W1"], wa["W1"])


@pytest.mark.parametrize(("dtype", "num_envs"), [("float32", 1), ("float64", 1), ("float32", 2)])
def test_resume_is_exact(train_cli: Run, tmp_path: Path, dtype: str, num_envs: int) -> None:
    flags = (*SMALL, "--dtype", dtype, "--num-envs", str(num_envs))
    straight = train_cli("--episodes", "4", *flags, name="straight")
    assert straight.returncode == 0, straight.stderr
    first = train_cli("--episodes", "2", *flags, name="split")
    assert first.returncode == 0, first.stderr
    second = run_cli(
        "train.py", "--resume", str(tmp_path / "split"), "--episodes", "4", "--device", "cpu",
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "resumed" in second.stdout
    assert records(tmp_path / "straight") == records(tmp_path / "split")
    ws, wr = weights(tmp_path / "straight"), weights(tmp_path / "split")
    for k in ws:
        np.testing.assert_array_equal(ws[k], wr[k])


def test_the_run_does_not_depend_on_the_number_of_actors(train_cli: Run, tmp_path: Path) -> None:
    """Episodes follow batch slots, not actors: 1 actor, 2 actors, and a 2-actor run
    resumed with 1 actor, all give the same run (batch 3 on 2 actors: uneven)."""
    flags = ("--hidden", "16", "--batch-size", "3", "--seed", "2")
    for name, n in (("one", "1"), ("two", "2"), ("split", "2")):
        episodes = "3" if name == "split" else "6"
        proc = train_cli("--episodes", episodes, "--num-envs", n, *flags, name=name)
        assert proc.returncode == 0, proc.stderr
    assert "2 actors" in proc.stdout
    resumed = train_cli("--resume", str(tmp_path / "split"), "--episodes", "6",
                        "--num-envs", "1", name="split")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    want = records(tmp_path / "one" / "metrics.jsonl")
    assert len(want) == 6
    assert records(tmp_path / "two" / "metrics.jsonl") == want
    assert records(tmp_path / "split" / "metrics.jsonl") == want
    for name in ("two", "split"):
        got = weights(tmp_path / name)
        for k, v in weights(tmp_path / "one").items():
            np.testing.assert_array_equal(got[k], v)


def test_more_actors_than_a_batch_has_episodes_are_not_started(train_cli: Run) -> None:
    proc = train_cli("--episodes", "1", "--batch-size", "1", "--hidden", "8", "--num-envs", "4")
    assert proc.returncode == 0, proc.stderr
    assert "note: 1 actor, not 4: a batch has 1 episode;" in proc.stdout


@pytest.mark.parametrize(
    ("preset", "cores", "actors", "says"),
    [
        ("fast", 2, 2, ""),  # fewer cores than episodes: all busy, nothing to say
        ("fast", 10, 10, ""),
        ("fast", 16, 10, "--preset many-cores (batch 20) keeps 16 busy"),
        ("fast", 64, 10, "--preset many-cores (batch 20) keeps 20 busy"),
        ("many-cores", 16, 16, ""),
        ("many-cores", 64, 20, "a larger --batch-size uses more"),
        ("steps", 16, 16, ""),
        ("steps", 64, 20, "--batch-size 64 keeps all busy, with the same 34,000 steps"),
    ],
)
def test_auto_actors_say_what_would_use_idle_cores(
    preset: str, cores: int, actors: int, says: str
) -> None:
    args = argparse.ArgumentParser()
    cli.add_train_arguments(args)
    cfg = cli.config_from_args(args.parse_args(["--preset", preset]))
    n, note = cfg.num_actors(cores=cores, where="CPUs of the cluster")
    assert n == actors
    if not says:
        assert note == ""
    else:
        assert says in note and f" {cfg.batch_size} of {cores} CPUs of the cluster busy" in note
        assert "\n" not in note


def test_many_cores_preset_is_batch_20_and_flags_given_win() -> None:
    args = argparse.ArgumentParser()
    cli.add_train_arguments(args)
    cfg = cli.config_from_args(args.parse_args(["--preset", "many-cores"]))
    assert (cfg.batch_size, cfg.learning_rate) == (20, 2e-3)
    cfg = cli.config_from_args(args.parse_args(["--preset", "many-cores", "--batch-size", "30"]))
    assert (cfg.batch_size, cfg.learning_rate) == (30, 2e-3)


def test_steps_preset_is_many_cores_with_batches_of_steps() -> None:
    args = argparse.ArgumentParser()
    cli.add_train_arguments(args)
    cfg = cli.config_from_args(args.parse_args(["--preset", "steps"]))
    assert (cfg.batch_size, cfg.learning_rate, cfg.batch_steps) == (20, 2e-3, 34_000)
    assert cfg.batch_steps_from is None  # batches of steps from the first update
    # More slots for more cores keep the learning setting, the steps a batch.
    cfg = cli.config_from_args(args.parse_args(["--preset", "steps", "--batch-size", "64"]))
    assert (cfg.batch_size, cfg.batch_steps) == (64, 34_000)


def test_idle_cores_note_is_printed(train_cli: Run) -> None:
    """A batch of 1 on a machine with 2 or more usable cores leaves cores idle."""
    if usable_cores() < 2:
        pytest.skip("needs 2 usable cores")
    proc = train_cli("--episodes", "1", "--batch-size", "1", "--hidden", "8")
    assert proc.returncode == 0, proc.stderr
    assert (
        f"note: a batch of 1 episode keeps 1 of {usable_cores()} usable cores busy;" in proc.stdout
    )
    assert "--preset many-cores" in proc.stdout


def test_resume_from_format_1_checkpoint_continues(small_checkpoint: Path, tmp_path: Path) -> None:
    """Checkpoints of pongxp 0.1 (rollout state per actor) still resume, with new streams."""
    with np.load(small_checkpoint) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["actors"] = arrays.pop("streams")
    arrays["format_version"] = np.asarray(1, dtype=np.int64)
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)
    assert checkpoint.load(old).streams == []
    proc = run_cli("train.py", "--resume", str(old), "--episodes", "3", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr  # (its log was not kept: a new one starts)
    assert "format-1 checkpoint" in proc.stdout and "starts at episode 3" in proc.stdout
    assert checkpoint.load(tmp_path / "old").episode == 3


def test_resume_keeps_the_checkpoint_settings(small_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "more"
    proc = run_cli("train.py", "--resume", str(small_checkpoint), "--episodes", "3",
                   "--device", "cpu", "--run", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ckpt = checkpoint.load(out)
    assert ckpt.episode == 3 and ckpt.config.hidden == 16 and ckpt.config.batch_size == 1


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_gpu_without_cuda_names_the_fix_before_any_folder_refusal(tmp_path: Path) -> None:
    """The device is the problem to fix first: a --run folder that is taken must
    not hide it behind "already holds" (CuPy is made unimportable, so this runs
    on GPU machines too)."""
    ckpt = tmp_path / "run" / "checkpoint.npz"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"an earlier run")
    proc = run_cli_without("cupy", "train", "--device", "gpu", "--episodes", "1",
                           "--run", str(ckpt.parent))  # fmt: skip
    line = one_line_error(proc)
    assert line.startswith("error: --device gpu: CuPy is not installed"), line
    assert ckpt.read_bytes() == b"an earlier run"


def test_auto_device_says_what_it_chose(tmp_path: Path) -> None:
    proc = run_cli("train.py", "--device", "auto", "--episodes", "1", "--hidden", "8",
                   "--batch-size", "1", "--run", str(tmp_path / "x"))  # fmt: skip
    expected = "GPU" if gpu_available()[0] else "CPU"
    assert f"on {expected} (" in proc.stdout + proc.stderr


def test_auto_device_says_why_an_installed_cupy_is_not_used(tmp_path: Path) -> None:
    """A CuPy that is installed but cannot load its CUDA libraries (a fake package
    first on the path, so this runs on GPU machines too)."""
    fake = tmp_path / "fake" / "cupy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        'raise ImportError("libcudart.so.12: cannot open shared object file")\n'
    )
    env = {**cli_env(), "PYTHONPATH": f"{fake.parent}{os.pathsep}{cli_env()['PYTHONPATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "pongxp", "train", "--device", "auto", "--episodes", "1",
         "--hidden", "8", "--batch-size", "1", "--run", str(tmp_path / "x")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        " on CPU (NumPy " in proc.stdout
        and ", float32 (GPU not used: CuPy cannot use a CUDA device "
        "(libcudart.so.12: cannot open shared object file))"
        in proc.stdout
    ), proc.stdout


def test_corrupt_checkpoint_is_refused_and_left_alone(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip file at all")
    before = bad.read_bytes()
    proc = run_cli("train.py", "--resume", str(bad), "--device", "cpu")
    line = one_line_error(proc)
    assert str(bad) in line
    assert bad.read_bytes() == before


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--episodes", "0"), "--episodes"),
        (("--batch-size", "-1"), "--batch-size"),
        (("--lr", "0"), "--lr"),
        (("--gamma", "1.5"), "--gamma"),
        (("--decay-rate", "0"), "--decay-rate"),
        (("--hidden", "0"), "--hidden"),
    ],
)
def test_bad_flag_values_fail_fast(train_cli: Run, flags: tuple[str, ...], needle: str) -> None:
    assert needle in one_line_error(train_cli(*flags))


def test_unknown_choice_is_an_argparse_error(train_cli: Run) -> None:
    proc = train_cli("--dtype", "float16")
    assert proc.returncode == 2 and "--dtype" in proc.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available()[0], reason=gpu_available()[1])
def test_checkpoint_moves_between_gpu_and_cpu(tmp_path: Path) -> None:
    """Train on the GPU, resume on the CPU, then back on the GPU."""
    ckpt = str(tmp_path / "x")
    plan = [("gpu", "2", ("--run", ckpt)), ("cpu", "4", ("--resume", ckpt)),
            ("gpu", "6", ("--resume", ckpt))]  # fmt: skip
    for device, episodes, extra in plan:
        proc = run_cli("train.py", "--device", device, "--episodes", episodes, *SMALL, *extra)
        assert proc.returncode == 0, proc.stderr
        assert checkpoint.load(ckpt).episode == int(episodes)
    assert [r["episode"] for r in records(Path(ckpt))] == list(range(1, 7))


def test_fresh_run_does_not_replace_an_earlier_one(train_cli: Run, tmp_path: Path) -> None:
    assert train_cli("--episodes", "1", *SMALL).returncode == 0
    before = hashes(tmp_path)
    line = one_line_error(train_cli("--episodes", "1", *SMALL))
    assert line == (
        f"error: {tmp_path / 'run'} already holds a run; continue it with: python train.py "
        f"--resume {tmp_path / 'run'}, or choose another --run"
    )
    assert hashes(tmp_path) == before
