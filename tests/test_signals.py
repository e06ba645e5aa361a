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
import re
import signal
import sys
from pathlib import Path

import pytest
from conftest import (
    FAST,
    ROOT,
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


def _signal_mask(pid: int, field: str) -> int:
    """The process's ``SigCgt`` (caught) or ``SigIgn`` (ignored) signals, as a bit mask."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s*([0-9a-f]+)$", status, re.MULTILINE)
    return int(found.group(1), 16) if found else 0


def _has(mask: int, sig: signal.Signals) -> bool:
    return bool(mask >> (sig - 1) & 1)


def _pongxp_code_runs(pid: int) -> bool:
    """Python's own start-up (its signal set-up, then site) is over and train.py's
    code runs: Python ignores SIGPIPE and catches SIGINT from its first moments,
    then train.py's first lines put SIGINT back to the default, until
    ``interrupts.install`` catches all three signals.

    Before that, Ctrl-C is Python's own KeyboardInterrupt, which pongxp cannot change.
    """
    caught, ignored = _signal_mask(pid, "SigCgt"), _signal_mask(pid, "SigIgn")
    return _has(ignored, signal.SIGPIPE) and (
        not _has(caught, signal.SIGINT) or _has(caught, signal.SIGTERM)
    )


def _handlers_installed(pid: int) -> bool:
    """``interrupts.install`` has run: SIGTERM, which Python leaves alone, is caught."""
    return _has(_signal_mask(pid, "SigCgt"), signal.SIGTERM)


# (signal, actors, a resume?, when): "imports" and "start-up" land before training,
# "imports" as soon as pongxp's code runs (Python importing pongxp and NumPy),
# "start-up" once the handlers are in (the checkpoint loading, the emulators
# starting); "workers" as the worker processes start, "first episode" once one is
# logged. Each waits for that moment, however slow the machine.
CASES = [
    (signal.SIGINT, 1, False, "imports"),
    (signal.SIGTERM, 2, True, "imports"),
    (signal.SIGINT, 1, True, "start-up"),
    (signal.SIGHUP, 1, True, "start-up"),
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
    if when == "imports":
        # Twice in a row: Python ignores SIGPIPE a moment before it catches SIGINT.
        wait_for(lambda: _pongxp_code_runs(proc.pid) and _pongxp_code_runs(proc.pid), proc)
    elif when == "start-up":
        wait_for(lambda: _handlers_installed(proc.pid), proc)
    elif when == "workers":
        wait_for(lambda: _workers_started(proc.pid), proc)
    else:
        wait_for(lambda: logged(metrics) > (2 if resumed else 0), proc)
    assert proc.poll() is None, "the run ended before the signal"
    if sig == signal.SIGTERM:
        proc.send_signal(sig)
    else:
        os.killpg(proc.pid, sig)  # as a terminal sends it: to the workers too
    code, out, err = finish(proc)

    assert err == "", err  # no traceback, from the trainer or from a worker
    if code == -sig:  # still importing pongxp: ended as the signal does, with no line
        assert when == "imports" and out == "", (code, out)
        assert hashes(tmp_path, locks=False) == before
        return
    assert code == 128 + sig, (code, out, err)
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


# A Python program that runs train.py (or ``python -m pongxp``) as Python would, with
# a hook: argv[1] the hook's marker file, argv[2] its go-on file, argv[3] the entry
# (a path, or -m), the rest train.py's arguments. The hooks stand for a slow machine.
_HOOKED = """
import os, runpy, sys, time
marker, go, entry = sys.argv[1:4]
del sys.argv[1:4]


def wait(marker=marker, go=go, os=os, time=time):
    # (Default arguments: at exit, this module's globals may be gone.)
    os.close(os.open(marker, os.O_CREAT | os.O_WRONLY))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            os.stat(go)
            return
        except OSError:
            time.sleep(0.01)

{hook}
if entry == "-m":
    runpy.run_module("pongxp", run_name="__main__", alter_sys=True)
elif ":" in entry:  # a console script, as pip writes it
    module, function = entry.split(":")
    sys.argv[0] = "pongxp"
    sys.exit(getattr(__import__(module, fromlist=[function]), function)())
else:
    runpy.run_path(entry, run_name="__main__")
"""

#: Importing pongxp.interrupts takes long: the window before its handlers are in.
SLOW_IMPORT = """
class Slow:
    def find_spec(self, name, path, target=None):
        if name == "pongxp.interrupts":
            wait()
        return None


sys.meta_path.insert(0, Slow())
"""

#: Freeing the modules at exit takes long, as after a large run on a busy machine:
#: Python has put its signal handlers back to the default by then.
SLOW_EXIT = """
class SlowExit:
    def __del__(self, wait=wait):
        wait()


slow_exit = SlowExit()  # freed with this module, late in Python's shutdown
"""


def _start_hooked(hook: str, tmp_path: Path, entry: str, *args: str):  # type: ignore[no-untyped-def]
    marker, go = tmp_path / "hook-reached", tmp_path / "go-on"
    argv = [sys.executable, "-c", _HOOKED.format(hook=hook), str(marker), str(go), entry, *args]
    return start(argv), marker, go


def _console_script() -> str:
    """The ``pongxp`` console script's entry point, as pyproject.toml declares it."""
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["pongxp"]


@pytest.mark.parametrize(
    "entry", ["train.py", "-m", "console"], ids=["train.py", "python-m-pongxp", "pongxp"]
)
def test_ctrl_c_while_pongxp_is_imported_ends_as_the_signal_does(
    entry: str, tmp_path: Path
) -> None:
    """Issue 34: a Ctrl-C in the imports printed a KeyboardInterrupt traceback; now
    it ends like SIGTERM there: no line, the signal's own exit, nothing written."""
    path = {"train.py": str(ROOT / "train.py"), "-m": "-m", "console": _console_script()}[entry]
    args = ["--run", str(tmp_path / "run"), *FAST]
    proc, marker, go = _start_hooked(
        SLOW_IMPORT, tmp_path, path, *([] if entry == "train.py" else ["train"]), *args
    )
    wait_for(marker.exists, proc)
    proc.send_signal(signal.SIGINT)
    go.touch()
    code, out, err = finish(proc)
    assert (code, out, err) == (-signal.SIGINT, "", "")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_second_signal_while_the_process_exits_keeps_the_first_ones_exit(
    first: signal.Signals, tmp_path: Path
) -> None:
    """Issue 34: a second signal late in the exit, once Python had put its handlers
    back to the default, ended the process as that signal (-2, -15): now 130, 143."""
    ckpt, metrics = tmp_path / "run" / "checkpoint.npz", tmp_path / "run" / "metrics.jsonl"
    flags = ["--run", str(ckpt.parent), *FAST, "--episodes", "100"]
    proc, marker, go = _start_hooked(SLOW_EXIT, tmp_path, str(ROOT / "train.py"), *flags)
    wait_for(lambda: logged(metrics) >= 1, proc)
    proc.send_signal(first)
    wait_for(marker.exists, proc)  # the save is done and the process is exiting
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    go.touch()
    code, out, err = finish(proc)
    assert (code, err) == (128 + first, ""), (code, out, err)
    saved = checkpoint.load(ckpt)
    assert saved_line(out.strip().splitlines()[-1], saved.episode, ckpt), out


def test_ctrl_c_in_the_first_batch_says_it_saved_the_start(tmp_path: Path) -> None:
    """Issue 34: "saved episode 0" did not say that it is the untrained start, all the
    play of a long first batch thrown away. One actor plays the batch's two slots one
    after the other: once the first slot's game is logged, the second one is playing."""
    ckpt, metrics = tmp_path / "run" / "checkpoint.npz", tmp_path / "run" / "metrics.jsonl"
    proc = start(train_argv(ckpt, "--hidden", "8", "--batch-size", "2", "--num-envs", "1",
                            "--episodes", "100", "--device", "cpu"))  # fmt: skip
    wait_for(lambda: logged(metrics) >= 1, proc)
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130 and err == "", (code, err)
    last = out.strip().splitlines()[-1]
    start_saved = f"interrupted: no batch had finished; saved the start (episode 0) to {ckpt}; "
    assert last.startswith(f"{start_saved}continue with: "), last
    assert checkpoint.load(ckpt).episode == 0
