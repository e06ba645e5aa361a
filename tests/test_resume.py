"""Resume continues the run it resumes and never writes over another run's files.

Every refusal here happens before any work, so the files are compared byte
for byte before and after. Runs are tiny (hidden 16, one-episode batches).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, cli_env

from pongxp import checkpoint
from pongxp.metrics import read as read_metrics

FAST = ("--hidden", "16", "--batch-size", "1", "--device", "cpu", "--quiet")


def train(cwd: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """``python train.py FLAGS`` run in ``cwd``, as a user in that directory would."""
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *flags],
        cwd=cwd, capture_output=True, text=True, timeout=300, env=cli_env(),
    )  # fmt: skip


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (
        proc.returncode,
        proc.stderr,
    )
    return lines[0]


def episodes(log: Path) -> list[int]:
    return [r["episode"] for r in read_metrics(log)]


def snapshot(*paths: Path) -> dict[Path, bytes | None]:
    return {p: p.read_bytes() if p.exists() else None for p in paths}


@pytest.fixture
def two_runs(small_checkpoint: Path, tmp_path: Path) -> Path:
    """In tmp_path: run ``b`` (runs/b.npz, runs/b.jsonl, 2 episodes) and another run
    at the default paths (runs/pong.*). Returns tmp_path, the user's directory."""
    runs = tmp_path / "runs"
    runs.mkdir()
    for name in ("b", "pong"):
        ckpt = checkpoint.load(small_checkpoint)
        ckpt.metrics_log = f"{name}.jsonl"  # as if trained under this name
        checkpoint.save(runs / f"{name}.npz", ckpt)
        shutil.copyfile(small_checkpoint.with_suffix(".jsonl"), runs / f"{name}.jsonl")
    return tmp_path


def test_the_interrupt_hint_continues_the_run_and_leaves_the_default_run_alone(
    tmp_path: Path, small_checkpoint: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    other = (runs / "pong.npz", runs / "pong.jsonl")  # an earlier run at the default paths
    shutil.copyfile(small_checkpoint, other[0])
    shutil.copyfile(small_checkpoint.with_suffix(".jsonl"), other[1])
    before = snapshot(*other)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "--checkpoint", "runs/b.npz",
         "--metrics", "runs/b.jsonl", "--seed", "1", "--episodes", "200", *FAST[:-1]],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # two episodes, then stop it as a scheduler would
        if line.startswith("episode      2"):
            proc.send_signal(signal.SIGTERM)
            break
    out, _ = proc.communicate(timeout=60)
    hint = out.strip().splitlines()[-1].split("continue with: ", 1)[1]
    assert hint == "python train.py --resume runs/b.npz --device cpu"
    saved = checkpoint.load(runs / "b.npz").episode
    # Exactly the hint, with a nearer target: the run's own files go on.
    done = train(tmp_path, *hint.split()[2:], "--episodes", str(saved + 2))
    assert done.returncode == 0, done.stderr
    assert checkpoint.load(runs / "b.npz").episode == saved + 2
    assert episodes(runs / "b.jsonl") == list(range(1, saved + 3))
    assert snapshot(*other) == before
    assert sorted(p.name for p in runs.iterdir()) == ["b.jsonl", "b.npz", "pong.jsonl", "pong.npz"]


def test_a_resume_without_paths_writes_the_resumed_runs_own_files(two_runs: Path) -> None:
    runs = two_runs / "runs"
    before = snapshot(runs / "pong.npz", runs / "pong.jsonl")
    done = train(two_runs, "--resume", "runs/b.npz", "--episodes", "3", "--quiet")
    assert done.returncode == 0, done.stderr
    assert checkpoint.load(runs / "b.npz").episode == 3
    assert episodes(runs / "b.jsonl") == [1, 2, 3]
    assert snapshot(runs / "pong.npz", runs / "pong.jsonl") == before


def test_the_log_is_found_from_another_directory(two_runs: Path) -> None:
    """The checkpoint records its log relative to itself, not to where training ran."""
    elsewhere = two_runs / "elsewhere"
    elsewhere.mkdir()
    done = train(elsewhere, "--resume", "../runs/b.npz", "--episodes", "3", "--quiet")
    assert done.returncode == 0, done.stderr
    assert episodes(two_runs / "runs" / "b.jsonl") == [1, 2, 3]
    assert list(elsewhere.iterdir()) == []


def test_a_resume_onto_another_existing_run_is_refused_without_overwrite(
    two_runs: Path,
) -> None:
    runs = two_runs / "runs"
    files = [runs / f"{n}.{s}" for n in ("b", "pong") for s in ("npz", "jsonl")]
    before = snapshot(*files)
    flags = ["--resume", "runs/b.npz", "--checkpoint", "runs/pong.npz",
             "--metrics", "runs/pong.jsonl", "--episodes", "3", "--quiet"]  # fmt: skip
    line = one_error(train(two_runs, *flags))
    assert line == (
        "error: runs/pong.npz is another run's checkpoint (this resume continues "
        "runs/b.npz); choose another --checkpoint, or add --overwrite to replace it"
    )
    assert snapshot(*files) == before
    done = train(two_runs, *flags, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert "note: --overwrite: replacing checkpoint runs/pong.npz" in done.stdout
    assert checkpoint.load(runs / "pong.npz").episode == 3
    assert snapshot(runs / "b.npz", runs / "b.jsonl") == {
        k: v for k, v in before.items() if k.stem == "b"
    }


def test_another_runs_log_is_refused_and_never_appended_to(two_runs: Path) -> None:
    runs = two_runs / "runs"
    other = runs / "other.jsonl"
    records = read_metrics(runs / "b.jsonl")
    records[-1]["total_steps"] += 7  # same length, other steps: another run
    other.write_text("".join(json.dumps(r) + "\n" for r in records))
    before = snapshot(other, runs / "b.npz")
    line = one_error(train(two_runs, "--resume", "runs/b.npz", "--metrics", str(other),
                           "--episodes", "3"))  # fmt: skip
    assert "is not this run's" in line and "at episode 2" in line
    assert snapshot(other, runs / "b.npz") == before


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        (None, "does not exist, but the run has 2 episodes"),
        ("garbage\x00\n{{not json\n", "has no record of episodes 1-2"),
        ('{"episode": 1, "total_steps": 5, "running_reward": -21}\n', "ends at episode 1"),
        ('{"episode": 2, "total_steps": 5, "running_reward": -21}\n', "at its start comes"),
    ],
    ids=["missing", "garbage", "shorter", "gap"],
)
def test_a_log_that_does_not_match_is_refused_then_restarted_with_overwrite(
    two_runs: Path, log: str | None, expected: str
) -> None:
    runs = two_runs / "runs"
    path = runs / "b.jsonl"
    if log is None:
        path.unlink()
    else:
        path.write_text(log)
    before = snapshot(path, runs / "b.npz")
    line = one_error(train(two_runs, "--resume", "runs/b.npz", "--episodes", "3"))
    assert expected in line and "add --overwrite to start a new log at episode 3" in line
    assert snapshot(path, runs / "b.npz") == before
    done = train(two_runs, "--resume", "runs/b.npz", "--episodes", "3", "--overwrite")
    assert done.returncode == 0, done.stderr
    assert "note: --overwrite: replacing metrics log" in done.stdout
    assert episodes(path) == [3]


def test_a_run_with_its_episodes_done_is_not_touched(two_runs: Path) -> None:
    runs = two_runs / "runs"
    before = snapshot(runs / "b.npz", runs / "b.jsonl")
    for target in ("2", "1"):
        line = one_error(train(two_runs, "--resume", "runs/b.npz", "--episodes", target))
        assert line == (
            "error: the run in runs/b.npz already has 2 episodes; give --episodes above 2 "
            "to continue it"
        )
    assert snapshot(runs / "b.npz", runs / "b.jsonl") == before


def test_overwrite_on_a_resume_says_what_it_does(two_runs: Path) -> None:
    done = train(two_runs, "--resume", "runs/b.npz", "--episodes", "3", "--overwrite")
    assert done.returncode == 0, done.stderr
    assert "note: --overwrite changes nothing here" in done.stdout
    assert episodes(two_runs / "runs" / "b.jsonl") == [1, 2, 3]


def test_a_keep_copy_continues_the_checkpoint_it_was_kept_from(tmp_path: Path) -> None:
    first = train(tmp_path, "--checkpoint", "k.npz", "--metrics", "k.jsonl", "--keep", "3",
                  "--checkpoint-every", "1", "--episodes", "3", *FAST)  # fmt: skip
    assert first.returncode == 0, first.stderr
    older = checkpoint.history_paths(tmp_path / "k.npz")[0]
    assert checkpoint.load(older).episode == 1
    done = train(tmp_path, "--resume", older.name, "--episodes", "4", "--quiet")
    assert done.returncode == 0, done.stderr
    assert checkpoint.load(tmp_path / "k.npz").episode == 4
    assert episodes(tmp_path / "k.jsonl") == [1, 2, 3, 4]


def test_a_copy_of_a_run_needs_its_own_log_and_starts_with_the_originals(
    two_runs: Path,
) -> None:
    runs = two_runs / "runs"
    before = snapshot(runs / "b.npz", runs / "b.jsonl")
    line = one_error(train(two_runs, "--resume", "runs/b.npz", "--checkpoint", "runs/c.npz",
                           "--episodes", "3"))  # fmt: skip
    assert "give it its own log with --metrics (e.g. runs/c.jsonl)" in line
    done = train(two_runs, "--resume", "runs/b.npz", "--checkpoint", "runs/c.npz",
                 "--metrics", "runs/c.jsonl", "--episodes", "3")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert episodes(runs / "c.jsonl") == [1, 2, 3]
    assert read_metrics(runs / "c.jsonl")[:2] == read_metrics(runs / "b.jsonl")
    assert snapshot(runs / "b.npz", runs / "b.jsonl") == before


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_export_refuses_to_write_over_its_own_checkpoint(
    small_checkpoint: Path, tmp_path: Path, how: str
) -> None:
    ckpt = tmp_path / "run.npz"
    shutil.copyfile(small_checkpoint, ckpt)
    out = ckpt
    if how == "symlink":
        out = tmp_path / "link.npz"
        out.symlink_to(ckpt)
    elif how == "hard link":
        out = tmp_path / "hard.npz"
        os.link(ckpt, out)
    before = ckpt.read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "pongxp", "export", str(ckpt), str(out), "--overwrite"],
        capture_output=True, text=True, timeout=60, env=cli_env(),
    )  # fmt: skip
    assert "writing the agent file there would destroy it" in one_error(proc)
    assert ckpt.read_bytes() == before
    assert not checkpoint.load(ckpt).agent


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("c.txt", "--checkpoint must end in .npz, got 'c.txt'"),
        ("/proc/version", "--checkpoint must end in .npz"),
        ("notes.npz", "notes.npz already exists and is not a pongxp checkpoint"),
    ],
)
def test_checkpoint_paths_follow_one_rule(tmp_path: Path, path: str, expected: str) -> None:
    (tmp_path / "notes.npz").write_text("my notes")
    line = one_error(train(tmp_path, "--checkpoint", path, "--metrics", "m.jsonl", *FAST))
    assert expected in line and "--resume" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.npz"]


def test_unknown_commands_are_named_and_there_is_a_version() -> None:
    def pongxp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pongxp", *args], capture_output=True,
                              text=True, timeout=60, env=cli_env())  # fmt: skip

    proc = pongxp("foo")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        "error: unknown command 'foo'; use one of: train, evaluate, plot, video, export, "
        "weights, tensorboard"
    )
    version = pongxp("--version")
    assert version.returncode == 0 and version.stdout.startswith("pongxp 0.")
