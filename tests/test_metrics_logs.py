"""The metrics log as input (GitHub issue 34): ``pongxp plot`` and ``pongxp tensorboard``
read it through one reader with one rule (``metrics.load``), so a log one of them
refuses, the other refuses too, in one line naming the line, before anything is written.

The file-level refusals (missing, empty, not UTF-8, a FIFO, bad values) are in
``test_plot.py`` and ``test_tensorboard.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import log_lines, log_record, needs

from pongxp import cli

COMMANDS = {
    "plot": needs("matplotlib", "plot"),
    "tensorboard": needs("tensorboardX", "tensorboard"),
}


def _run(command: str, log: Path, out: Path) -> int:
    if command == "plot":
        return cli.main(["plot", str(log), "-o", str(out)])
    return cli.main(["tensorboard", str(log), str(out)])


LOGS = {
    # name: (the log's text, what the one line says after "error: LOG")
    "episode and reward only": (
        "".join(json.dumps({"episode": e, "reward": -21}) + "\n" for e in (1, 2, 3)),
        " is not a pongxp metrics log: no running_reward, steps, total_steps, time",
    ),
    "episode only": (
        "".join(json.dumps({"episode": e}) + "\n" for e in (1, 2)),
        " is not a pongxp metrics log: no reward, running_reward, steps",
    ),
    "a later line without some fields": (
        log_lines(log_record(1), log_record(2, running_reward=None, time=None, steps=None),
                  log_record(3)),
        " line 2 has no running_reward, steps, time; fix or remove that line",
    ),
    "an episode twice": (
        log_lines(log_record(1), log_record(2), log_record(2), log_record(3)),
        " line 3 has episode 2 again (line 2 has it); fix or remove that line",
    ),
    "an episode back in time": (
        log_lines(log_record(1), log_record(3), log_record(2)),
        " line 3 has episode 2 after episode 3; a log holds one run's episodes in order",
    ),
    "steps going back": (
        log_lines(log_record(1), log_record(2), log_record(3, total_steps=1500)),
        " line 3 has total_steps 1500, fewer than the 2000 of episode 2 before it",
    ),
}  # fmt: skip


@pytest.mark.parametrize("command", [pytest.param(c, marks=m) for c, m in COMMANDS.items()])
@pytest.mark.parametrize("kind", LOGS)
def test_both_commands_refuse_what_one_run_cannot_have_written(
    kind: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 34: tensorboard converted such logs (and plot took duplicates and steps
    going back), as "N episodes, 0 emulator steps" or a curve no run played."""
    text, needle = LOGS[kind]
    log, out = tmp_path / "run.jsonl", tmp_path / ("x.png" if command == "plot" else "tb")
    log.write_text(text)
    assert _run(command, log, out) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {log}{needle}") and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("command", [pytest.param(c, marks=m) for c, m in COMMANDS.items()])
def test_a_byte_order_mark_at_the_start_is_read_past(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log saved by an editor that writes a UTF-8 byte-order mark reads as it was."""
    log, out = tmp_path / "run.jsonl", tmp_path / ("x.png" if command == "plot" else "tb")
    log.write_bytes(b"\xef\xbb\xbf" + log_lines(*(log_record(e) for e in (1, 2, 3))).encode())
    assert _run(command, log, out) == 0, capsys.readouterr().err
    if command == "tensorboard":
        assert "3 episodes, 3,000 emulator steps" in capsys.readouterr().out
    assert out.exists()
