"""Fault injection on real training processes (GitHub issue #5).

Every test runs ``train.py`` on the real emulator and injects a fault from
outside: ``kill -9`` at random moments (some timed to land inside a checkpoint
write), SIGINT/SIGTERM, a full disk (ENOSPC from /dev/full, EFBIG from
RLIMIT_FSIZE), a directory that turns read-only, weights that overflow, bad
flags and an unusable GPU. Each then checks what the issue promises: the
checkpoint in place always loads, at most one checkpoint interval is lost, a
resumed run ends bit-identical to one that was never interrupted, and every
failure is one ``error:`` line that says what to do.

Unit-level checkpoint faults (bad files, stale temp files) are in
``test_checkpoint.py``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import resource
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    FAST,
    ROOT,
    copy_run,
    default_sigint,
    error_line,
    finish,
    hashes,
    logged,
    run,
    same_run,
    start,
    temp_files,
    train_argv,
    unwritable,
    wait_for,
)

from pongxp import checkpoint, cli
from pongxp.metrics import read as read_metrics
from pongxp.run_folder import Run

# -- kill -9 trials --------------------------------------------------------------------
KILL_TRIALS = 16  # random-moment kills of one run, each resumed by the next trial
KILL_IN_WRITE_EVERY = 3  # every third trial waits for a checkpoint write, then kills
KILL_SEED = 5  # the kill moments are random but repeatable
CHECKPOINT_EVERY = 2  # episodes; with batch size 1 this is also the most a kill may lose
SAVE_DELAY = 0.2  # PONGXP_TEST_SAVE_DELAY: widens each write window to ~0.2 s
# Two actors need two episodes a batch (at most --batch-size actors are started).
TWO_ACTORS = ("--batch-size", "2", "--num-envs", "2")


@dataclass
class Trial:
    index: int
    aimed_at_write: bool
    seconds: float  # from start to the kill
    landed_in_write: bool  # the kill left this process's temp file behind
    temp_bytes: int  # its size: 0 = killed before writing, else before the rename
    checkpoint_episode: int  # 0: none yet
    episodes_played: int
    lost: int


# -- 1. kill -9 ---------------------------------------------------------------------------


def test_kill_9_at_random_moments_loses_at_most_one_interval(tmp_path: Path) -> None:
    """KILL_TRIALS kill -9s of one training run, each resumed by the next trial.

    After every kill: the checkpoint in place (and every kept one) loads, no
    temp file is in place, episodes played but not in the checkpoint are at
    most CHECKPOINT_EVERY, and episodes replayed after a resume repeat
    exactly. Finally the run is completed, and must equal bit for bit a run
    of the same length that was never killed.
    """
    rng = random.Random(KILL_SEED)
    ckpt, metrics = tmp_path / "run" / "checkpoint.npz", tmp_path / "run" / "metrics.jsonl"
    flags = (*FAST, "--episodes", "1000", "--checkpoint-every", str(CHECKPOINT_EVERY),
             "--keep", "3")  # fmt: skip
    env = {"PONGXP_TEST_SAVE_DELAY": str(SAVE_DELAY)}
    seen: dict[int, tuple] = {}  # episode -> what it played, across every trial
    trials: list[Trial] = []
    first_save = 3.0  # seconds from start to a run's first save; measured by trial 0
    for index in range(KILL_TRIALS):
        # No checkpoint yet: the run starts over in its folder (its lock, held by a
        # killed process, is taken over).
        resume = ("--resume", str(ckpt)) if ckpt.exists() else ()
        began = time.monotonic()
        proc = start(train_argv(ckpt, *flags, *resume), env=env)
        aimed = index % KILL_IN_WRITE_EVERY == 0
        if aimed:  # wait until this process is inside a save, then kill within it
            mine = ckpt.with_name(f".{ckpt.name}.tmp-{proc.pid}")
            wait_for(mine.exists, proc)
            if index == 0:
                first_save = time.monotonic() - began
            time.sleep(rng.uniform(0, 0.9 * SAVE_DELAY))
        else:
            # From start-up (imports, checkpoint load, ROM) to a few episodes in,
            # scaled to this machine's speed so that some kills come after a save.
            time.sleep(rng.uniform(0.3, 2.0) * first_save)
        assert proc.poll() is None, "the run ended before it was killed"
        proc.send_signal(signal.SIGKILL)
        finish(proc)
        assert proc.returncode == -signal.SIGKILL

        played = logged(metrics)
        for r in read_metrics(metrics) if metrics.exists() else []:
            outcome = (r["reward"], r["steps"], r["total_steps"], r["running_reward"])
            assert seen.setdefault(r["episode"], outcome) == outcome, "a replay differed"
        saved = checkpoint.load(ckpt).episode if ckpt.exists() else 0  # must load
        for kept in Run(ckpt.parent).kept_checkpoints():
            checkpoint.load(kept)
        assert len(Run(ckpt.parent).kept_checkpoints()) <= 3
        lost = played - saved
        assert 0 <= lost <= CHECKPOINT_EVERY, (index, played, saved)
        temp = ckpt.with_name(f".{ckpt.name}.tmp-{proc.pid}")
        size = temp.stat().st_size if temp.exists() else -1
        seconds = round(time.monotonic() - began, 2)
        trials.append(Trial(index, aimed, seconds, size >= 0, size, saved, played, lost))

    in_write = [t for t in trials if t.landed_in_write]
    print(f"\n{len(trials)} kill -9 trials, {len(in_write)} inside a checkpoint write:")
    for t in trials:
        print(f"  {t}")
    assert all(t.landed_in_write for t in trials if t.aimed_at_write)
    assert len(in_write) >= len(range(0, KILL_TRIALS, KILL_IN_WRITE_EVERY))
    assert trials[-1].checkpoint_episode >= 4, "the trials should make progress"

    # Finish the run, then replay it without kills: both must end identical.
    final = checkpoint.load(ckpt).episode + CHECKPOINT_EVERY
    done = run(train_argv(ckpt, *FAST, "--episodes", str(final), "--resume", str(ckpt)))
    assert done[0] == 0, done[2]
    assert temp_files(ckpt) == [], "temp files of killed writers must be cleaned up"
    records = read_metrics(metrics)
    assert [r["episode"] for r in records] == list(range(1, final + 1))
    for r in records:
        outcome = (r["reward"], r["steps"], r["total_steps"], r["running_reward"])
        assert seen.setdefault(r["episode"], outcome) == outcome
    clean = tmp_path / "clean" / "checkpoint.npz"
    done = run(train_argv(clean, *FAST, "--episodes", str(final)))
    assert done[0] == 0, done[2]
    same_run(ckpt, clean)


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # exited; only its parent has not reaped it yet


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_kill_9_with_worker_processes_leaves_no_orphans(tmp_path: Path) -> None:
    ckpt = tmp_path / "run" / "checkpoint.npz"
    proc = start(train_argv(ckpt, *FAST, "--episodes", "100", *TWO_ACTORS,
                            "--checkpoint-every", "2"))  # fmt: skip
    wait_for(ckpt.exists, proc)
    workers = _children(proc.pid)
    assert len(workers) >= 2
    proc.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 20
    while not all(_gone(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(w) for w in workers), "rollout workers outlived the killed trainer"
    assert finish(proc)[2] == "", "a worker printed a traceback on losing its trainer"
    saved = checkpoint.load(ckpt).episode
    done = run(train_argv(ckpt, *FAST, "--episodes", str(saved + 2), *TWO_ACTORS,
                          "--resume", str(ckpt)))  # fmt: skip
    assert done[0] == 0, done[2]
    assert checkpoint.load(ckpt).episode == saved + 2


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_worker_process_killed_mid_run_stops_it_with_one_line(tmp_path: Path) -> None:
    """The process pool does not replace workers (Ray's does, test_ray.py): the
    trainer saves what it had committed and says how to go on."""
    ckpt = tmp_path / "run" / "checkpoint.npz"
    proc = start(train_argv(ckpt, *FAST, "--episodes", "100", "--num-envs", "2",
                            "--batch-size", "2", "--checkpoint-every", "1000"))  # fmt: skip
    wait_for(lambda: logged(ckpt.with_name("metrics.jsonl")) >= 2, proc)
    workers = [p for p in _children(proc.pid)
               if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]  # fmt: skip
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    result = finish(proc)
    line = error_line(result)
    assert result[0] == 3
    saved = checkpoint.load(ckpt)
    assert line == (f"error: a rollout worker process died; see its error above; saved episode "
                    f"{saved.episode} to {ckpt}; continue with: python train.py --resume "
                    f"{ckpt.parent} --device cpu --num-envs 2")  # fmt: skip
    # Saved before its first interval checkpoint: the log stays for the resume to check.
    assert logged(ckpt.with_name("metrics.jsonl")) >= saved.episode > 0


# -- 2. SIGINT and SIGTERM -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "num_envs"),
    [(signal.SIGINT, 2), (signal.SIGTERM, 1)],
    ids=["ctrl-c-to-process-group-with-workers", "sigterm"],
)
def test_signal_saves_a_final_checkpoint_and_exits_cleanly(
    sig: signal.Signals, num_envs: int, tmp_path: Path
) -> None:
    """No periodic save happens (interval 1000), so the checkpoint is the final one.

    Ctrl-C in a terminal signals the whole process group, workers included;
    they ignore it and the trainer saves.
    """
    ckpt, metrics = tmp_path / "run" / "checkpoint.npz", tmp_path / "run" / "metrics.jsonl"
    batch = ("--batch-size", str(num_envs), "--num-envs", str(num_envs))  # all actors busy
    argv = train_argv(ckpt, *FAST, "--episodes", "100", "--checkpoint-every", "1000",
                      *batch)  # fmt: skip
    proc = start(argv, start_new_session=True)
    wait_for(lambda: logged(metrics) >= 3, proc)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C does
    else:
        proc.send_signal(sig)
    code, out, err = finish(proc)
    played = logged(metrics)

    assert code == 128 + sig, (code, err)
    assert "Traceback" not in err, err
    assert err == ""  # no traceback, no emulator banner from the workers
    saved = checkpoint.load(ckpt)
    # Everything committed is saved: only the batch in flight may be lost.
    assert played >= 3 and played - saved.episode <= num_envs, (saved.episode, played)
    last = out.strip().splitlines()[-1]
    hint = f"python train.py --resume {ckpt.parent} --device cpu --num-envs {num_envs}"
    assert last == f"interrupted: saved episode {saved.episode} to {ckpt}; continue with: {hint}"
    # The hint as printed (bar a shorter target) continues the same files.
    command = [sys.executable, str(ROOT / "train.py"), *hint.split()[2:]]
    done = run([*command, "--episodes", str(saved.episode + num_envs)])
    assert done[0] == 0, done[2]
    assert checkpoint.load(ckpt).episode == saved.episode + num_envs
    assert [r["episode"] for r in read_metrics(metrics)] == list(
        range(1, saved.episode + num_envs + 1)
    )


def test_second_ctrl_c_during_the_final_save_does_not_abort_it(tmp_path: Path) -> None:
    """An impatient double Ctrl-C: the second one arrives while the final checkpoint
    is being written (the test hook makes that write last 0.6 s)."""
    ckpt, metrics = tmp_path / "run" / "checkpoint.npz", tmp_path / "run" / "metrics.jsonl"
    argv = train_argv(ckpt, *FAST, "--episodes", "100", "--checkpoint-every", "1000")
    proc = start(argv, env={"PONGXP_TEST_SAVE_DELAY": "0.6"})
    wait_for(lambda: logged(metrics) >= 2, proc)
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: temp_files(ckpt) != [], proc)  # the final save has begun
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130, err
    saved = checkpoint.load(ckpt)
    assert logged(metrics) - saved.episode <= 1
    assert f"interrupted: saved episode {saved.episode} to {ckpt}" in out
    assert temp_files(ckpt) == []


# -- 3. disk full, unwritable directory ------------------------------------------------


@pytest.fixture
def resumable(small_checkpoint: Path, tmp_path: Path) -> Path:
    """A copy of the session's 2-episode run to resume (and to keep intact); its checkpoint."""
    return copy_run(small_checkpoint, tmp_path / "run")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux /dev/full")
def test_disk_full_while_saving_keeps_the_previous_checkpoint(resumable: Path) -> None:
    """Real ENOSPC: the training process's temp file is a symlink to /dev/full,
    made as soon as its pid is known (its first save is seconds later)."""
    before = resumable.read_bytes()
    proc = start(train_argv(resumable, *FAST, "--episodes", "5", "--checkpoint-every", "1",
                            "--resume", str(resumable)))  # fmt: skip
    resumable.with_name(f".{resumable.name}.tmp-{proc.pid}").symlink_to("/dev/full")
    result = finish(proc)
    line = error_line(result)
    assert result[0] == 3  # training failed (2 is for bad input found before any work)
    assert f"cannot write checkpoint {resumable}: No space left on device" in line
    assert "the previous checkpoint is unchanged" in line
    assert resumable.read_bytes() == before
    assert checkpoint.load(resumable).episode == 2


def _limit_file_size() -> None:
    default_sigint()
    # Any write past 300 kB fails with EFBIG (Python ignores SIGXFSZ); the
    # checkpoint is ~900 kB, the metrics log a few hundred bytes.
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))


def test_file_size_limit_while_saving_keeps_the_previous_checkpoint(resumable: Path) -> None:
    before = resumable.read_bytes()
    argv = train_argv(resumable, *FAST, "--episodes", "5", "--checkpoint-every", "1",
                      "--resume", str(resumable))  # fmt: skip
    result = run(argv, preexec_fn=_limit_file_size)
    line = error_line(result)
    assert result[0] == 3
    assert f"cannot write checkpoint {resumable}: File too large" in line
    assert resumable.read_bytes() == before
    assert temp_files(resumable) == []


def test_disk_full_for_the_metrics_log_stops_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process: every append to the log fails with ENOSPC."""

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pongxp.metrics.MetricsLog.write", full)
    metrics = tmp_path / "run" / "metrics.jsonl"
    code = cli.train_main(["--run", str(metrics.parent), *FAST, "--episodes", "3"])
    out, err = capsys.readouterr()
    line = error_line((code, out, err))
    assert code == 3
    assert f"cannot write metrics log {metrics}: No space left on device" in line
    assert "no checkpoint had been written yet" in line
    assert not metrics.parent.exists()  # nothing can resume it: the folder is removed


def test_directory_turning_read_only_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "out" / "checkpoint.npz"
    proc = start(train_argv(ckpt, *FAST, "--episodes", "50", "--checkpoint-every", "1"))
    wait_for(ckpt.exists, proc)
    with unwritable(ckpt.parent):
        before = ckpt.read_bytes()  # no rename can replace it from here on
        result = finish(proc)
    line = error_line(result)
    assert result[0] == 3
    assert f"cannot write checkpoint {ckpt}:" in line
    assert "Permission denied" in line or "Operation not permitted" in line
    assert ckpt.read_bytes() == before
    assert checkpoint.load(ckpt).episode >= 1


@pytest.mark.parametrize("where", ["parent is a file", "read-only parent"])
@pytest.mark.usefixtures("no_actors")
def test_unwritable_run_folder_fails_before_any_work(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process, with starting the emulators made to fail the test."""
    parent = tmp_path / "parent"
    if where == "parent is a file":
        parent.write_text("x")
        context: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        parent.mkdir()
        context = unwritable(parent)
    before = hashes(tmp_path)
    with context:
        code = cli.train_main(["--run", str(parent / "run"), *FAST])
    out, err = capsys.readouterr()
    reason = "is not a folder" if where == "parent is a file" else "Permission denied"
    assert code == 2 and error_line((code, out, err)).startswith(
        f"error: cannot create run folder {parent / 'run'}: "
    ), err
    assert reason in err or "Operation not permitted" in err
    assert not any(line.startswith("episode") for line in out.splitlines())
    assert hashes(tmp_path) == before


# -- 4. bad checkpoints through the CLI (all kinds: test_checkpoint.py) ----------------


@pytest.mark.parametrize("kind", ["truncated", "pickle", "object array", "missing W2",
                                  "W1 int dtype", "format version 3", "NaN weight",
                                  "ALE state cut"])  # fmt: skip
def test_resume_from_bad_checkpoint_runs_nothing_and_overwrites_nothing(
    kind: str, small_checkpoint: Path, tmp_path: Path
) -> None:
    from test_checkpoint import BAD_FILES, MARKER_NAME, arrays_of

    make, expected = BAD_FILES[kind]
    bad = copy_run(small_checkpoint, tmp_path / "run")
    make(small_checkpoint, bad, arrays_of(small_checkpoint))
    before = hashes(tmp_path)
    result = run(train_argv(bad, *FAST, "--episodes", "5", "--resume", str(bad.parent)))
    line = error_line(result)
    assert result[0] == 2 and str(bad) in line and expected in line, line
    assert hashes(tmp_path) == before
    assert not (tmp_path / MARKER_NAME).exists()


# -- 5. NaN / inf during training ------------------------------------------------------


def test_exploding_learning_rate_stops_and_keeps_the_last_good_checkpoint(
    resumable: Path,
) -> None:
    """lr 1e300 is inf in float32: the first update's weights are inf/NaN."""
    before = resumable.read_bytes()
    result = run(train_argv(resumable, *FAST, "--episodes", "6", "--checkpoint-every", "1",
                            "--lr", "1e300", "--resume", str(resumable)))  # fmt: skip
    line = error_line(result)
    assert result[0] == 3
    assert "NaN/inf in the update after episode 3" in line and "try a smaller --lr" in line
    assert f"{resumable} (episode 2) is unchanged" in line
    assert resumable.read_bytes() == before
    assert temp_files(resumable) == []


def test_a_run_that_dies_before_its_first_checkpoint_leaves_no_log_to_refuse(
    tmp_path: Path,
) -> None:
    """Nothing can resume it, so its folder is removed: the rerun just works."""
    ckpt, metrics = tmp_path / "run" / "checkpoint.npz", tmp_path / "run" / "metrics.jsonl"
    died = run(train_argv(ckpt, *FAST, "--episodes", "3", "--lr", "1e300"))
    assert died[0] == 3 and "no checkpoint had been written yet" in error_line(died)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    again = run(train_argv(ckpt, *FAST, "--episodes", "1"))
    assert again[0] == 0, again[2]
    assert checkpoint.load(ckpt).episode == 1 and logged(metrics) == 1


def test_a_folder_of_files_pongxp_did_not_write_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    before = hashes(tmp_path)
    code = cli.train_main(["--run", str(folder), *FAST])
    assert code == 2
    assert capsys.readouterr().err == (
        f"error: {folder} holds files pongxp did not write (notes.txt); choose another --run "
        "(a new folder, or an empty one)\n"
    )
    assert hashes(tmp_path) == before


def test_overflowing_optimizer_state_is_caught_before_it_is_saved(
    small_checkpoint: Path, tmp_path: Path
) -> None:
    """Finite weights whose gradient squares overflow float32 in the RMSProp cache.

    Two hidden units with huge, equal input weights and opposite output
    weights: the policy stays unsaturated (their outputs cancel), so the
    gradient of W2 is ~1e20 and its square is inf, while W itself stays finite.
    A checkpoint of that state could never be loaded again.
    """
    ckpt = checkpoint.load(small_checkpoint)
    w1, w2 = ckpt.params["W1"].copy(), ckpt.params["W2"].copy()
    w1[:2] = 1e20
    w2[:2] = (1.0, -1.0)
    ckpt.params = {"W1": w1, "W2": w2}
    path = copy_run(small_checkpoint, tmp_path / "run")
    checkpoint.save(path, ckpt)
    good = tmp_path / "good.npz"
    shutil.copyfile(path, good)
    # First run: save each episode, so episode 3 is saved if its update is fine.
    result = run(train_argv(path, *FAST, "--episodes", "4", "--checkpoint-every", "1",
                            "--resume", str(path)))  # fmt: skip
    line = error_line(result)
    assert result[0] == 3 and "NaN/inf" in line, line
    assert path.read_bytes() == good.read_bytes()
    checkpoint.load(path)


# -- 6. every flag checked before work -------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--episodes", "0"), "--episodes must be a positive integer"),
        (("--episodes", "-5"), "--episodes must be a positive integer"),
        (("--batch-size", "0"), "--batch-size must be an integer from 1 to 1024"),
        (("--batch-size", "1000000000"), "--batch-size must be an integer from 1 to 1024"),
        (("--hidden", "-1"), "--hidden must be a positive integer"),
        (("--num-envs", "0"), "--num-envs must be auto or an integer from 1 to 512"),
        (("--num-envs", "many"), "--num-envs must be auto or an integer"),
        (("--num-envs", "100000"), "--num-envs must be auto or an integer from 1 to 512"),
        (("--checkpoint-every", "0"), "--checkpoint-every must be a positive integer"),
        (("--keep", "0"), "--keep must be a positive integer"),
        (("--lr", "0"), "--lr must be a finite number > 0"),
        (("--lr", "-0.001"), "--lr must be a finite number > 0"),
        (("--lr", "nan"), "--lr must be a finite number > 0"),
        (("--lr", "inf"), "--lr must be a finite number > 0"),
        (("--gamma", "0"), "--gamma must be in (0, 1]"),
        (("--gamma", "1.01"), "--gamma must be in (0, 1]"),
        (("--gamma", "nan"), "--gamma must be in (0, 1]"),
        (("--decay-rate", "0"), "--decay-rate must be in (0, 1]"),
        (("--decay-rate", "2"), "--decay-rate must be in (0, 1]"),
        (("--seed", "-1"), "--seed must be an integer >= 0"),
        (("--env-id", "Pong-v9"), "--env-id 'Pong-v9' is not a known Pong env"),
        (("--env-id", "ALE/Breakout-v5"), "is not a known Pong env; use one of: ALE/Pong-v5"),
        (("--resume", "no/such.npz"), "checkpoint no/such.npz does not exist"),
    ],
)
def test_bad_flags_fail_before_any_work(
    flags: tuple[str, ...], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process (fast): validation must return before anything is made."""
    argv = ["--run", str(tmp_path / "run"), *FAST, *flags]
    started = time.monotonic()
    code = cli.train_main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err
    assert list(tmp_path.iterdir()) == [], "nothing may be written before the checks pass"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("flag", "value"), [("--device", "tpu"), ("--dtype", "float16")])
def test_unknown_device_or_dtype_is_refused_by_the_parser(
    flag: str, value: str, tmp_path: Path
) -> None:
    result = run(train_argv(tmp_path / "run", flag, value))
    assert result[0] == 2
    assert f"argument {flag}: invalid choice: '{value}'" in result[2]
    assert list(tmp_path.iterdir()) == []


# -- 7. GPU faults -----------------------------------------------------------------------


def test_gpu_without_cupy_says_how_to_install_it(tmp_path: Path) -> None:
    """Runs everywhere: the child is made to see no CuPy (sys.modules entry None)."""
    code = ("import sys; sys.modules['cupy'] = None; from pongxp.cli import train_main; "
            "sys.exit(train_main())")  # fmt: skip
    argv = [sys.executable, "-c", code, *train_argv(tmp_path / "run", "--device", "gpu")[2:]]
    result = run(argv)
    line = error_line(result)
    assert result[0] == 2
    assert line == (f"error: --device gpu: CuPy is not installed; pip install -e '.[cuda12]' "
                    f"in {ROOT} (CUDA 12.x; cuda13 for CUDA 13.x)")  # fmt: skip


def test_out_of_host_memory_is_one_line(tmp_path: Path) -> None:
    """The CPU twin of the GPU's out-of-memory path: W1 of 2**33 x 6400 (400 TiB)."""
    result = run(train_argv(tmp_path / "run", *FAST, "--episodes", "1",
                            "--hidden", str(2**33)))  # fmt: skip
    line = error_line(result)
    assert result[0] == 2
    assert line.startswith("error: the CPU ran out of memory (Unable to allocate"), line
    # The weights alone do not fit: neither the batch size nor float32 (the
    # run's dtype already) would help.
    assert line.endswith(f"; try a smaller --hidden (W1 alone is 200 TiB at --hidden {2**33})"), (
        line
    )


def test_out_of_memory_tips_name_only_what_would_help() -> None:
    """In an update the batch counts too, and float32 is offered only to float64 runs."""
    from pongxp.config import TrainConfig
    from pongxp.trainer import _memory_tips

    f32 = TrainConfig(hidden=200)
    assert _memory_tips(f32, training=False) == [
        "a smaller --hidden (W1 alone is 4.88 MiB at --hidden 200)"
    ]
    f64 = TrainConfig(hidden=200, dtype="float64")
    assert _memory_tips(f64, training=True) == [
        "a smaller --batch-size",
        "a smaller --hidden (W1 alone is 9.77 MiB at --hidden 200)",
        "--dtype float32",
    ]
    # A batch of steps is sized by --batch-steps, not by its slots.
    steps = TrainConfig(hidden=200, batch_size=20, batch_steps=34_000)
    assert _memory_tips(steps, training=True)[0] == "a smaller --batch-steps"


def _cupy_or_skip() -> None:
    pytest.importorskip("cupy", reason="GPU fault tests need CuPy")


@pytest.mark.gpu
def test_gpu_with_no_visible_device_says_use_cpu(tmp_path: Path) -> None:
    _cupy_or_skip()
    result = run(train_argv(tmp_path / "run", "--device", "gpu", "--episodes", "1"),
                 env={"CUDA_VISIBLE_DEVICES": ""})  # fmt: skip
    line = error_line(result)
    assert result[0] == 2
    assert line.startswith("error: --device gpu: ") and "--device cpu" in line


@pytest.mark.gpu
def test_gpu_out_of_memory_says_what_to_shrink(tmp_path: Path) -> None:
    """CuPy's pool is capped at 1 MiB; W1 alone is 5 MB."""
    _cupy_or_skip()
    from pongxp.backend import gpu_available

    usable, reason = gpu_available()
    if not usable:
        pytest.skip(reason)
    result = run(train_argv(tmp_path / "run", "--device", "gpu", "--episodes", "1",
                            "--hidden", "200"),
                 env={"CUPY_GPU_MEMORY_LIMIT": str(1 << 20)})  # fmt: skip
    line = error_line(result)
    assert result[0] == 2
    assert line.startswith("error: the GPU ran out of memory"), line
    # It runs out making the weights, before any batch: the batch size is no help.
    assert "a smaller --hidden" in line and line.endswith(" or --device cpu"), line
    assert "--batch-size" not in line and "--dtype" not in line, line


# -- 8. --keep --------------------------------------------------------------------------


def test_keep_k_survives_a_bad_newest_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "run" / "checkpoint.npz"
    done = run(train_argv(ckpt, *FAST, "--episodes", "4", "--checkpoint-every", "1",
                          "--keep", "3"))  # fmt: skip
    assert done[0] == 0, done[2]
    kept = Run(ckpt.parent).kept_checkpoints()
    assert [p.name for p in kept] == [f"ep0000000{e}.npz" for e in (2, 3, 4)]
    assert [checkpoint.load(p).episode for p in kept] == [2, 3, 4]
    # A bad newest file (damaged in place: its hard-linked history copy too).
    with open(ckpt, "r+b") as f:
        f.seek(ckpt.stat().st_size // 2)
        f.write(os.urandom(256))
    failed = run(train_argv(ckpt, *FAST, "--episodes", "5", "--resume", str(ckpt)))
    line = error_line(failed)
    assert failed[0] == 2 and line.endswith(f"--resume {kept[1]}"), line
    # Following the advice costs one interval, not the run: it goes on in a new
    # folder (a fork of the run at episode 3), and the damaged run is left as it is.
    before = hashes(tmp_path)
    done = run([sys.executable, str(ROOT / "train.py"), *FAST, "--episodes", "5",
                "--resume", str(kept[1])])  # fmt: skip
    assert done[0] == 0, done[2]
    fork = Run(tmp_path / "run-from3")
    assert checkpoint.load(fork.checkpoint).episode == 5
    assert [checkpoint.load(p).episode for p in fork.kept_checkpoints()] == [4, 5]
    assert [r["episode"] for r in read_metrics(fork.log)] == [1, 2, 3, 4, 5]
    assert {k: v for k, v in hashes(tmp_path).items() if k in before} == before
