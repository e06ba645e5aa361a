"""Signals at any moment of a run (GitHub issue #24): SIGINT (Ctrl-C, sent to the
whole process group as a terminal does), SIGTERM (to the trainer alone, as ``kill``
does) and SIGHUP (a closed terminal: the group) all end like a Ctrl-C during
training: no traceback from the trainer or its workers, one ``interrupted:`` line,
exit 128 + signal, and the last good checkpoint kept.

Signals during training and a double Ctrl-C during the final save are in
``test_faults.py``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import (
    FAST,
    copy_run,
    finish,
    hashes,
    logged,
    saved_line,
    start,
    temp_files,
    train_argv,
    wait_for,
)

from pongxp import checkpoint
from pongxp.metrics import read as read_metrics


def _workers_started(pid: int) -> bool:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return path.exists() and path.read_text().strip() != ""


# (signal, actors, a resume?, when): "imports" and "start-up" land before training
# (Python importing pongxp and NumPy; the checkpoint loading, the emulators starting),
# "workers" as the worker processes start, "first episode" once one is logged.
CASES = [
    (signal.SIGINT, 1, False, 0.1),
    (signal.SIGTERM, 2, True, 0.1),
    (signal.SIGHUP, 1, True, 0.5),
    (signal.SIGINT, 2, False, "workers"),
    (signal.SIGTERM, 2, False, "workers"),
    (signal.SIGHUP, 2, True, "workers"),
    (signal.SIGTERM, 1, True, "first episode"),
    (signal.SIGHUP, 2, False, "first episode"),
]


@pytest.mark.parametrize(
    ("sig", "actors", "resumed", "when"),
    CASES,
    ids=[f"{signal.Signals(c[0]).name}-{c[1]}env-{'resume' if c[2] else 'new'}-{c[3]}"
         for c in CASES],
)  # fmt: skip
def test_a_signal_early_in_a_run_ends_in_one_line(
    sig: signal.Signals,
    actors: int,
    resumed: bool,
    when: float | str,
    small_checkpoint: Path,
    tmp_path: Path,
) -> None:
    ckpt, metrics = tmp_path / "run" / "checkpoint.npz", tmp_path / "run" / "metrics.jsonl"
    flags = [*FAST, "--episodes", "100", "--checkpoint-every", "1000", "--num-envs", str(actors),
             "--batch-size", str(actors)]  # fmt: skip
    if resumed:
        copy_run(small_checkpoint, ckpt.parent)
        flags += ["--resume", str(ckpt.parent)]
    before = hashes(tmp_path, locks=False)
    proc = start(train_argv(ckpt, *flags), start_new_session=True)
    if when == "workers":
        wait_for(lambda: _workers_started(proc.pid), proc)
    elif when == "first episode":
        wait_for(lambda: logged(metrics) > (2 if resumed else 0), proc)
    else:
        time.sleep(when)  # type: ignore[arg-type]
    assert proc.poll() is None, "the run ended before the signal"
    if sig == signal.SIGTERM:
        proc.send_signal(sig)
    else:
        os.killpg(proc.pid, sig)  # as a terminal sends it: to the workers too
    code, out, err = finish(proc)

    assert code == 128 + sig, (code, out, err)
    assert err == "", err  # no traceback, from the trainer or from a worker
    last = out.strip().splitlines()[-1]
    assert last.startswith("interrupted: "), out
    assert temp_files(ckpt) == []
    if last.startswith("interrupted: before training began; "):
        assert hashes(tmp_path, locks=False) == before  # nothing changed: rerun or resume as before
    else:  # training had begun: its last batch boundary is saved
        saved = checkpoint.load(ckpt)
        assert saved_line(last, saved.episode, ckpt), last
        episodes = [r["episode"] for r in read_metrics(metrics)]
        assert episodes[: saved.episode] == list(range(1, saved.episode + 1))


@pytest.mark.parametrize(
    ("first", "second"),
    [(signal.SIGINT, signal.SIGTERM), (signal.SIGTERM, signal.SIGHUP)],
    ids=["ctrl-c-then-sigterm", "sigterm-then-sighup"],
)
def test_a_second_signal_during_the_final_save_keeps_the_first_ones_exit(
    first: signal.Signals, second: signal.Signals, tmp_path: Path
) -> None:
    """It used to kill the run with the second signal; now the save finishes."""
    ckpt, metrics = tmp_path / "run" / "checkpoint.npz", tmp_path / "run" / "metrics.jsonl"
    argv = train_argv(ckpt, *FAST, "--episodes", "100", "--checkpoint-every", "1000")
    proc = start(argv, env={"PONGXP_TEST_SAVE_DELAY": "0.6"})
    wait_for(lambda: logged(metrics) >= 1, proc)
    proc.send_signal(first)
    wait_for(lambda: temp_files(ckpt) != [], proc)  # the final save has begun
    proc.send_signal(second)
    code, out, err = finish(proc)
    assert code == 128 + first and err == "", (code, err)
    saved = checkpoint.load(ckpt)
    assert saved_line(out.strip().splitlines()[-1], saved.episode, ckpt), out
    assert temp_files(ckpt) == []


def _hangup_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts it


def test_sighup_ignored_at_start_stays_ignored(tmp_path: Path) -> None:
    """``nohup python train.py``: a closed terminal must not stop the run."""
    metrics = tmp_path / "run" / "metrics.jsonl"
    proc = start(train_argv(metrics.parent, *FAST, "--episodes", "100"), preexec_fn=_hangup_ignored)
    wait_for(lambda: logged(metrics) >= 1, proc)
    proc.send_signal(signal.SIGHUP)
    seen = logged(metrics)
    wait_for(lambda: logged(metrics) > seen, proc)  # still training
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 143 and err == "", (code, err)
