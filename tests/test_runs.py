"""A run is a folder (``run_folder``): what each command writes, and that nothing else
changes. Each test hashes every file under the test's directory (every run under
``runs/`` and files pongxp did not write) before and after, and allows only the
run's own folder to change: a fresh run, a resume, a fork, a crash during a save,
two runs started at once, a second process on a run in use (and the lock of a
killed one taken over), an old flat checkpoint resumed, and the hostile cases of
the last outside trial (symlinks, a folder of someone else's files).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    FAST,
    ROOT,
    cli_env,
    copy_run,
    error_line,
    finish,
    hashes,
    logged,
    records,
    run,
    same_run,
    start,
    temp_files,
    wait_for,
)

from pongxp import checkpoint
from pongxp.run_folder import Run

TRAIN = [sys.executable, str(ROOT / "train.py")]


def train(cwd: Path, *flags: str) -> tuple[int, str, str]:
    """``python train.py FLAGS`` run in ``cwd`` (so a new run's folder is ``cwd/runs/...``)."""
    return run([*TRAIN, *flags], cwd=cwd)


def outside(before: dict[str, str], after: dict[str, str], *folders: Path) -> dict[str, str]:
    """The files of ``after`` outside ``folders`` whose hash is new, changed, or gone."""
    mine = tuple(str(f) + os.sep for f in folders)
    keys = {k for k in (*before, *after) if not k.startswith(mine)}
    return {k: after.get(k, "gone") for k in keys if before.get(k) != after.get(k)}


@pytest.fixture
def user(small_checkpoint: Path, tmp_path: Path) -> Path:
    """A user's directory: two runs in runs/ and files pongxp did not write."""
    copy_run(small_checkpoint, tmp_path / "runs" / "a")
    copy_run(small_checkpoint, tmp_path / "runs" / "b")
    (tmp_path / "runs" / "notes.txt").write_text("mine")
    (tmp_path / "pong.npz").write_text("not a checkpoint")
    return tmp_path


def test_the_readme_command_twice_makes_two_folders(user: Path) -> None:
    before = hashes(user)
    first = train(user, *FAST, "--episodes", "1")
    second = train(user, *FAST, "--episodes", "1")
    assert first[0] == second[0] == 0, (first[2], second[2])
    assert first[1].splitlines()[0] == "run folder: runs/pong-seed0"
    assert second[1].splitlines()[0] == "run folder: runs/pong-seed0-2"
    runs = [Run(user / "runs" / "pong-seed0"), Run(user / "runs" / "pong-seed0-2")]
    assert outside(before, hashes(user), *(r.folder for r in runs)) == {}
    same_run(runs[0].checkpoint, runs[1].checkpoint)
    manifest = json.loads(runs[0].manifest.read_text())
    assert manifest["parent"] is None and manifest["settings"]["hidden"] == 16
    assert manifest["command"].startswith("python train.py --hidden 16")
    assert sorted(p.name for p in runs[0].folder.iterdir()) == [
        ".lock", "checkpoint.npz", "metrics.jsonl", "run.json"
    ]  # fmt: skip


def test_a_resume_continues_its_run_in_place_and_nothing_else(user: Path) -> None:
    a = Run(user / "runs" / "a")
    before = hashes(user)
    done = train(user, "--resume", "runs/a", "--episodes", "3", "--quiet")
    assert done[0] == 0, done[2]
    assert checkpoint.load(a.folder).episode == 3
    assert [r["episode"] for r in records(a.folder)] == [1, 2, 3]
    assert outside(before, hashes(user), a.folder) == {}
    # Its checkpoint file names the run too; a run that is done is refused.
    again = train(user, "--resume", "runs/a/checkpoint.npz", "--episodes", "3")
    assert "already has 3 episodes; give --episodes above 3" in error_line(again)


def test_a_fork_is_a_new_folder_and_the_parent_is_only_read(user: Path, tmp_path: Path) -> None:
    a = Run(user / "runs" / "a")
    grown = train(user, "--resume", "runs/a", "--episodes", "4", "--keep", "3",
                  "--checkpoint-every", "1", "--tensorboard", "--quiet")  # fmt: skip
    assert grown[0] == 0, grown[2]
    kept = a.kept_checkpoints()
    assert [p.name for p in kept] == ["ep00000003.npz", "ep00000004.npz"]
    before = hashes(user)
    # From a kept checkpoint: a new folder beside it, named for the episode.
    fork = train(user, "--resume", str(kept[0]), "--episodes", "5", "--quiet")
    assert fork[0] == 0, fork[2]
    new = Run(user / "runs" / "a-from3")
    assert f"note: episodes 1-3 of {a.log} copied into {new.log}" in fork[1]
    assert outside(before, hashes(user), new.folder) == {}
    assert [r["episode"] for r in records(new.folder)] == [1, 2, 3, 4, 5]
    assert records(new.folder)[:3] == records(a.folder)[:3]
    parent = json.loads(new.manifest.read_text())["parent"]
    assert parent == {"checkpoint": str(kept[0]), "episode": 3}
    # Its curves start with the parent's points up to episode 3 (the parent wrote
    # curves from episode 3 on), then its own.
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    def reward_steps(board: Path) -> list[int]:
        return sorted(
            event.step
            for file in board.glob("*tfevents*")
            for event in LegacyEventFileLoader(str(file)).Load()
            if any(v.tag == "episode/reward" for v in event.summary.value)
        )

    assert reward_steps(new.board) == [r["total_steps"] for r in records(new.folder)][2:]
    # A run continued into a folder named with --run: the same, and the parent untouched.
    before = hashes(user)
    named = train(user, "--resume", "runs/a", "--run", str(tmp_path / "c"), "--episodes", "5")
    assert named[0] == 0, named[2]
    assert outside(before, hashes(user), tmp_path / "c") == {}
    assert records(tmp_path / "c")[:4] == records(a.folder)


def test_a_crash_during_a_save_changes_nothing_outside_the_run(user: Path) -> None:
    before = hashes(user)
    proc = start([*TRAIN, "--run", "runs/x", *FAST, "--episodes", "100",
                  "--checkpoint-every", "1"], env={"PONGXP_TEST_SAVE_DELAY": "0.4"},
                 cwd=user)  # fmt: skip
    ckpt = user / "runs" / "x" / "checkpoint.npz"
    wait_for(lambda: ckpt.exists() and temp_files(ckpt) != [], proc)  # the second save
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert outside(before, hashes(user), ckpt.parent) == {}
    saved = checkpoint.load(ckpt).episode
    # Its lock, held by the killed process, is taken over; the log is trimmed to the
    # checkpoint and the replayed episodes come back identical.
    played = records(ckpt.parent)
    done = train(user, "--resume", "runs/x", "--episodes", str(saved + 2), "--quiet")
    assert done[0] == 0, done[2]
    assert records(ckpt.parent)[: len(played)] == played
    assert [r["episode"] for r in records(ckpt.parent)] == list(range(1, saved + 3))
    assert temp_files(ckpt) == []


def test_two_runs_started_at_once_never_share_a_folder(tmp_path: Path) -> None:
    procs = [start([*TRAIN, *FAST, "--episodes", "2", "--seed", str(s)], cwd=tmp_path)
             for s in (0, 0, 1)]  # fmt: skip
    results = [finish(p) for p in procs]
    assert all(r[0] == 0 for r in results), [r[2] for r in results]
    folders = sorted(r[1].splitlines()[0].removeprefix("run folder: ") for r in results)
    assert folders == ["runs/pong-seed0", "runs/pong-seed0-2", "runs/pong-seed1"]
    for folder in folders:
        assert [r["episode"] for r in records(tmp_path / folder)] == [1, 2]
    same_run(tmp_path / folders[0], tmp_path / folders[1])
    # Both naming one folder: one trains, the other is refused in one line.
    procs = [start([*TRAIN, "--run", "runs/same", *FAST, "--episodes", "2"], cwd=tmp_path)
             for _ in range(2)]  # fmt: skip
    results = sorted(finish(p) for p in procs)
    assert [r[0] for r in results] == [0, 2], [r[2] for r in results]
    line = error_line(results[1])
    assert "runs/same is in use by process" in line or "runs/same already holds a run" in line
    assert [r["episode"] for r in records(tmp_path / "runs" / "same")] == [1, 2]


def test_a_run_in_use_is_refused_and_a_killed_ones_lock_taken_over(user: Path) -> None:
    proc = start([*TRAIN, "--run", "runs/busy", *FAST, "--episodes", "1000",
                  "--checkpoint-every", "1"], cwd=user)  # fmt: skip
    busy = Run(user / "runs" / "busy")
    wait_for(lambda: busy.checkpoint.exists(), proc)
    before = hashes(user)
    for flags in (("--resume", "runs/busy"), ("--run", "runs/busy")):
        refused = train(user, *flags, "--episodes", "2000")
        line = error_line(refused)
        if flags[0] == "--resume":
            assert line == (
                f"error: runs/busy is in use by process {proc.pid}, which is training there; "
                "wait for it to end or stop it (a killed process's lock is taken over)"
            )
        else:
            assert "runs/busy already holds a run" in line
    assert outside(before, hashes(user), busy.folder) == {}
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    saved = checkpoint.load(busy.folder).episode
    done = train(user, "--resume", "runs/busy", "--episodes", str(saved + 1), "--quiet")
    assert done[0] == 0, done[2]
    assert busy.lock.read_text() != str(proc.pid)


def _old_flat_checkpoint(small_checkpoint: Path, runs: Path) -> tuple[Path, Path]:
    """An older pongxp's run: runs/pong.npz (its settings with the paths of then, the
    log recorded beside it) and runs/pong.jsonl."""
    ckpt = checkpoint.load(small_checkpoint)
    arrays = dict(np.load(small_checkpoint))
    old_settings = {**asdict(ckpt.config), "checkpoint": "runs/pong.npz",
                    "metrics": "runs/pong.jsonl", "tensorboard": "", "overwrite": False,
                    "extra": {}, "run": None}  # fmt: skip
    del old_settings["run"]
    arrays["config"] = np.asarray(json.dumps(old_settings))
    arrays["metrics_log"] = np.asarray("pong.jsonl")
    runs.mkdir(parents=True, exist_ok=True)
    np.savez(runs / "pong.npz", **arrays)
    shutil.copyfile(small_checkpoint.with_name("metrics.jsonl"), runs / "pong.jsonl")
    return runs / "pong.npz", runs / "pong.jsonl"


def test_an_old_flat_checkpoint_starts_a_run_folder_and_stays_as_it_was(
    small_checkpoint: Path, tmp_path: Path
) -> None:
    _, log = _old_flat_checkpoint(small_checkpoint, tmp_path / "runs")
    before = hashes(tmp_path)
    done = train(tmp_path, "--resume", "runs/pong.npz", "--episodes", "3", "--quiet")
    assert done[0] == 0, done[2]
    new = Run(tmp_path / "runs" / "pong")
    assert done[1].splitlines()[0] == "run folder: runs/pong"
    assert outside(before, hashes(tmp_path), new.folder) == {}
    assert [r["episode"] for r in records(new.folder)] == [1, 2, 3]
    assert records(new.folder)[:2] == records(log)
    assert checkpoint.load(new.folder).episode == 3
    # Resuming it again makes another folder: the old file is only ever read.
    again = train(tmp_path, "--resume", "runs/pong.npz", "--episodes", "3", "--quiet")
    assert again[0] == 0 and again[1].splitlines()[0] == "run folder: runs/pong-2", again[2]


@pytest.mark.parametrize("case", ["symlink to another run", "someone's folder", "a file"])
def test_a_run_folder_that_is_not_new_is_refused_and_left_alone(user: Path, case: str) -> None:
    target = user / "target"
    if case == "symlink to another run":
        target.symlink_to(user / "runs" / "a")
    elif case == "someone's folder":
        target.mkdir()
        (target / "events.out.tfevents.1.host.1700000000000000000").write_text("theirs")
        (target / "metrics.jsonl").write_text("theirs")
    else:
        target.write_text("theirs")
    before = hashes(user)
    line = error_line(train(user, "--run", str(target), *FAST, "--episodes", "1"))
    expected = {
        "symlink to another run": "already holds a run; continue it with: python train.py "
        f"--resume {target}",
        "someone's folder": "holds files pongxp did not write (events.out.tfevents.1.host.",
        "a file": "is a file; give a folder for the run",
    }[case]
    assert expected in line, line
    assert hashes(user) == before


def test_a_log_that_does_not_match_its_checkpoint_is_refused_in_place(user: Path) -> None:
    a = Run(user / "runs" / "a")
    a.log.write_text(a.log.read_text().splitlines()[0] + "\n")  # episode 2 lost
    before = hashes(user)
    line = error_line(train(user, "--resume", "runs/a", "--episodes", "3"))
    assert line == (
        "error: metrics log runs/a/metrics.jsonl does not match the checkpoint's episodes 1-2; "
        "continue it in a new folder with a new log: --resume runs/a --run runs/NEW"
    )
    assert hashes(user) == before
    done = train(user, "--resume", "runs/a", "--run", "runs/new", "--episodes", "3", "--quiet")
    assert done[0] == 0 and "runs/new/metrics.jsonl starts at episode 3" in done[1], done[2]
    assert outside(before, hashes(user), user / "runs" / "new") == {}


def test_every_command_takes_a_run_folder(user: Path) -> None:
    a = user / "runs" / "a"
    before = hashes(a)
    for args in (("evaluate", str(a), "--episodes", "1", "--quiet"),
                 ("export", str(a), str(user / "agent.npz")),
                 ("plot", str(a), "-o", str(user / "curve.png"))):  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", "pongxp", *args], capture_output=True,
                              text=True, timeout=120, env=cli_env(), cwd=user)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    assert hashes(a) == before
    assert checkpoint.load(user / "agent.npz").agent


@pytest.mark.parametrize("how", ["the run", "its checkpoint", "symlink", "hard link"])
def test_export_refuses_to_write_over_its_own_checkpoint(
    small_checkpoint: Path, tmp_path: Path, how: str
) -> None:
    ckpt = copy_run(small_checkpoint, tmp_path / "run")
    source, out = (ckpt.parent, ckpt) if how == "the run" else (ckpt, ckpt)
    if how == "symlink":
        out = tmp_path / "link.npz"
        out.symlink_to(ckpt)
    elif how == "hard link":
        out = tmp_path / "hard.npz"
        os.link(ckpt, out)
    before = hashes(tmp_path)
    proc = run([sys.executable, "-m", "pongxp", "export", str(source), str(out), "--overwrite"])
    assert "writing the agent file there would destroy it" in error_line(proc)
    assert hashes(tmp_path) == before


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


def test_the_interrupt_line_continues_the_run(tmp_path: Path) -> None:
    proc = start([*TRAIN, *FAST[:-1], "--episodes", "200", "--seed", "1"], cwd=tmp_path)
    wait_for(lambda: logged(tmp_path / "runs" / "pong-seed1") >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    code, out, _ = finish(proc)
    assert code == 143
    hint = out.strip().splitlines()[-1].split("continue with: ", 1)[1]
    assert hint == "python train.py --resume runs/pong-seed1 --device cpu"
    saved = checkpoint.load(tmp_path / "runs" / "pong-seed1").episode
    done = train(tmp_path, *hint.split()[2:], "--episodes", str(saved + 1), "--quiet")
    assert done[0] == 0, done[2]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["pong-seed1"]


def test_a_resume_names_every_setting_it_changes(small_checkpoint: Path, tmp_path: Path) -> None:
    """Also a checkpoint whose slots no longer match its batch size (edited by hand)."""
    copy_run(small_checkpoint, tmp_path / "a")
    done = train(tmp_path, "--resume", "a", "--episodes", "3", "--batch-size", "2",
                 "--lr", "0.001", "--quiet")  # fmt: skip
    assert done[0] == 0, done[2]
    assert "note: --batch-size 2 replaces the run's 1" in done[1]
    assert "note: --lr 0.001 replaces the run's 0.0001" in done[1]
    ckpt = checkpoint.load(small_checkpoint)
    ckpt.config = replace(ckpt.config, batch_size=3)
    edited = copy_run(small_checkpoint, tmp_path / "b")
    checkpoint.save(edited, ckpt)
    done = train(tmp_path, "--resume", "b", "--episodes", "3", "--quiet")
    assert done[0] == 0, done[2]
    assert "note: the checkpoint holds 1 slots' games but its batch size is 3" in done[1]


def test_an_old_checkpoint_naming_another_file_as_its_log_only_reads_it(
    small_checkpoint: Path, tmp_path: Path
) -> None:
    """The last trial's case: a checkpoint naming another file as its log. It is read
    at most (a device never: it could be endless), and the new run starts a log."""
    old, _ = _old_flat_checkpoint(small_checkpoint, tmp_path / "runs")
    arrays = dict(np.load(old))
    for named in ("/dev/zero", str(tmp_path / "notes.txt")):
        (tmp_path / "notes.txt").write_text("mine\n")
        arrays["metrics_log"] = np.asarray(named)
        np.savez(old, **arrays)
        before = hashes(tmp_path)
        done = train(tmp_path, "--resume", "runs/pong.npz", "--episodes", "3", "--quiet")
        assert done[0] == 0, done[2]
        folder = Path(done[1].splitlines()[0].removeprefix("run folder: "))
        assert f"{folder}/metrics.jsonl starts at episode 3" in done[1]
        assert outside(before, hashes(tmp_path), tmp_path / folder) == {}
