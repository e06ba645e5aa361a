"""TensorBoard logging, read back with TensorBoard's own readers: live training, resume,
the log converter, and the refusals (no extra, a taken directory, bad logs). A run's
event files are in its folder's ``tb/``; what a fork copies: ``test_runs.py``."""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, hashes, log_lines, log_record, run_cli, run_cli_without
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from pongxp import checkpoint, cli
from pongxp.run_folder import Run as RunFolder
from pongxp.tensorboard_log import (
    EPISODE_TAGS,
    NORM_TAGS,
    TensorBoardLog,
    _points_up_to_step,
    weight_and_grad_norms,
)

Run = Callable[..., subprocess.CompletedProcess[str]]
SMALL = ("--hidden", "16", "--batch-size", "2", "--seed", "5", "--num-envs", "1")
BATCH_TAGS = ("speed/train_steps_per_s", "speed/update_seconds", "speed/actors_idle", *NORM_TAGS)


def accumulate(directory: Path) -> EventAccumulator:
    acc = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def points(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar point in the directory's files, in file order, with no purging:
    what any reader finds in the files themselves."""
    found: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for file in sorted(directory.glob("*tfevents*")):
        for event in LegacyEventFileLoader(str(file)).Load():
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    found[value.tag].append((event.step, value.simple_value))
    return found


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_line(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


def test_a_run_writes_its_logged_scalars_at_emulator_steps(train_cli: Run, tmp_path: Path) -> None:
    proc = train_cli("--episodes", "4", *SMALL, "--tensorboard")
    assert proc.returncode == 0, proc.stderr
    log = jsonl(tmp_path / "run" / "metrics.jsonl")
    acc = accumulate(tmp_path / "run" / "tb")
    steps = [r["total_steps"] for r in log]
    for key, tag in EPISODE_TAGS.items():
        got = acc.Scalars(tag)
        assert [p.step for p in got] == steps, tag
        np.testing.assert_allclose([p.value for p in got], [r[key] for r in log], rtol=1e-6)
    # Batches of 2: a point after episodes 2 and 4, at their step.
    for tag in BATCH_TAGS:
        assert [p.step for p in acc.Scalars(tag)] == [steps[1], steps[3]], tag
    last = {tag: acc.Scalars(tag)[-1].value for tag in BATCH_TAGS}
    ckpt = checkpoint.load(tmp_path / "run")
    for name in ("W1", "W2"):  # the weights the run ended with
        want = np.linalg.norm(ckpt.params[name].astype(np.float64))
        assert last[f"norms/{name}"] == pytest.approx(want, rel=1e-5)
    assert last["norms/grad_W1"] > 0 and last["norms/grad_W2"] > 0
    assert last["speed/update_seconds"] > 0 and last["speed/train_steps_per_s"] > 0
    assert 0 <= last["speed/actors_idle"] < 1
    # The settings: all as text, the algorithm's for the HParams tab.
    text = acc.Tensors("settings/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| hidden | `16` |" in text and "| batch_size | `2` |" in text
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["hidden"].number_value == 16 and hparams["env_id"].string_value == "Pong-v0"


def test_a_resume_continues_the_curves_with_no_step_twice(train_cli: Run, tmp_path: Path) -> None:
    """Resumed after a crash that lost its last save, the run replays episodes 3-4:
    their first points must go, from the files themselves, not only from what a
    reader shows."""
    run = RunFolder(tmp_path / "run")
    tb = run.board
    flags = (*SMALL, "--checkpoint-every", "2", "--keep", "2")
    assert train_cli("--episodes", "4", *flags, "--tensorboard").returncode == 0
    first = points(tb)
    older = run.kept_checkpoints()[0]
    assert checkpoint.load(older).episode == 2
    older.replace(run.checkpoint)  # as if killed before its save at episode 4
    # No --tensorboard: a resume writes its curves as its run did.
    proc = train_cli("--episodes", "6", "--resume", str(run.folder))
    assert proc.returncode == 0, proc.stderr
    log = jsonl(run.log)
    assert [r["episode"] for r in log] == list(range(1, 7))
    steps = [r["total_steps"] for r in log]
    for found in (points(tb), {t: [(p.step, p.value) for p in s] for t, s in _scalars(tb)}):
        assert [s for s, _ in found["episode/reward"]] == steps
        for tag, series in found.items():
            got = [s for s, _ in series]
            assert got == sorted(set(got)), f"{tag}: a step twice or backwards: {got}"
    # The replayed episodes' points are the new ones (their speeds differ run to run).
    speeds = dict(points(tb)["speed/actor_steps_per_s"])
    assert [speeds[s] for s in steps] == pytest.approx([r["steps_per_s"] for r in log])
    assert dict(first["episode/reward"])[steps[1]] == log[1]["reward"]
    text = accumulate(tb).Tensors("settings/text_summary")
    assert [t.step for t in text] == [0, steps[1] + 1]  # the run's start and the resume


def _scalars(directory: Path) -> list[tuple[str, list]]:
    acc = accumulate(directory)
    return [(tag, acc.Scalars(tag)) for tag in acc.Tags()["scalars"]]


def test_a_run_that_dies_before_its_first_checkpoint_leaves_no_event_files(
    train_cli: Run, tmp_path: Path
) -> None:
    tb = tmp_path / "run" / "tb"
    flags = ("--hidden", "16", "--batch-size", "1", "--tensorboard")
    died = train_cli("--episodes", "2", *flags, "--lr", "1e300")
    assert died.returncode == 3 and "no checkpoint had been written yet" in died.stderr
    assert list(tmp_path.iterdir()) == []
    again = train_cli("--episodes", "1", *flags)
    assert again.returncode == 0, again.stderr
    assert len(points(tb)["episode/reward"]) == 1


def test_missing_extra_is_one_line_naming_the_install(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    log.write_text(log_lines(log_record(1)))
    for argv in (
        ("train", "--device", "cpu", "--hidden", "8", "--episodes", "1", "--tensorboard",
         "--run", str(tmp_path / "r")),
        ("tensorboard", str(log), str(tmp_path / "tb")),
    ):  # fmt: skip
        proc = run_cli_without("tensorboardX", *argv)
        line = one_line(proc.returncode, proc.stderr)
        assert "needs tensorboardX" in line and "pip install -e '.[tensorboard]'" in line
        assert "episode" not in proc.stdout
    assert not (tmp_path / "tb").exists() and not (tmp_path / "r").exists()


def test_converted_logs_read_back_as_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = (ROOT / "pretrained" / "pong-v0.jsonl").read_text().splitlines()[:40]
    log = tmp_path / "pong-v0.jsonl"
    log.write_text("\n".join(lines) + "\n")
    records = jsonl(log)
    tb = tmp_path / "tb"
    assert cli.main(["tensorboard", str(log), str(tb)]) == 0
    assert f"wrote {tb / 'pong-v0'}: 40 episodes" in capsys.readouterr().out
    acc = accumulate(tb / "pong-v0")
    for key, tag in EPISODE_TAGS.items():
        got = acc.Scalars(tag)
        assert [p.step for p in got] == [r["total_steps"] for r in records]
        np.testing.assert_allclose([p.value for p in got], [r[key] for r in records], rtol=1e-6)
    # Wall times keep the log's training times apart, for the "relative" axis.
    walls = [p.wall_time for p in acc.Scalars("episode/reward")]
    np.testing.assert_allclose(np.diff(walls), np.diff([r["time"] for r in records]), atol=1e-3)
    # Again: refused, changing nothing (one point a step, not two).
    before = hashes(tmp_path)
    assert cli.main(["tensorboard", str(log), str(tb)]) == 2
    assert "already holds TensorBoard event files" in capsys.readouterr().err
    assert hashes(tmp_path) == before
    assert len(points(tb / "pong-v0")["episode/reward"]) == 40


def test_a_run_folder_is_converted_into_its_own_tb(
    small_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import copy_run

    run = RunFolder(copy_run(small_checkpoint, tmp_path / "run").parent)
    assert cli.main(["tensorboard", str(run.folder)]) == 0
    assert f"wrote {run.board}: 2 episodes" in capsys.readouterr().out
    steps = [r["total_steps"] for r in jsonl(run.log)]
    assert [s for s, _ in points(run.board)["episode/reward"]] == steps


def _lines(*records: dict[str, object]) -> bytes:
    return log_lines(*records).encode()


BAD_LOGS = {
    # name: (contents, what the one line says)
    "missing": (None, "does not exist"),
    "empty": (b"", "has no episode records"),
    "string": (_lines(log_record(1, total_steps="9")), 'line 1 has total_steps "9", not a count'),
    "null": (_lines(log_record(1), log_record(2, reward=None)), "line 2 has no reward"),
    "list": (_lines(log_record(1, time=[1, 2])), "line 1 has time [1, 2], not a number"),
    "not an object": (_lines(log_record(1)) + b"[1, 2]\n" + _lines(log_record(3)),
                      "line 2 is a JSON list"),
    "not JSON": (_lines(log_record(1)) + b"episode 2\n" + _lines(log_record(3)),
                 "line 2 is not JSON"),
    "not UTF-8": (_lines(log_record(1)).replace(b"}", b', "x": "\xff"}'),
                  "is not a pongxp metrics log (not UTF-8"),
    "npz": (None, "is not a pongxp metrics log (not UTF-8"),
    "fifo": (None, "is not a regular file"),
}  # fmt: skip


@pytest.mark.parametrize("kind", BAD_LOGS)
def test_converter_refuses_a_bad_log_in_one_line_and_writes_nothing(
    kind: str, small_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bad log comes second: the good first one must not be written either."""
    contents, needle = BAD_LOGS[kind]
    good = tmp_path / "good.jsonl"
    good.write_text(log_lines(log_record(1)))
    bad = tmp_path / f"{kind.replace(' ', '-')}.jsonl"
    if kind == "npz":
        bad = small_checkpoint
    elif kind == "fifo":
        os.mkfifo(bad)  # reading it would never end
    elif contents is not None:
        bad.write_bytes(contents)
    tb = tmp_path / "tb"
    assert cli.main(["tensorboard", str(good), str(bad), str(tb)]) == 2
    line = one_line(2, capsys.readouterr().err)
    assert line.startswith(f"error: {bad}") or f" {bad}" in line, line
    assert needle in line, line
    assert not tb.exists()


def test_converter_refuses_two_logs_of_one_name(tmp_path: Path) -> None:
    logs = [tmp_path / "a" / "x.jsonl", tmp_path / "b" / "x.jsonl"]
    for path in logs:
        path.parent.mkdir()
        path.write_text('{"episode": 1}\n')
    proc = run_cli("tensorboard", *map(str, logs), str(tmp_path / "tb"))
    assert "the same name" in one_line(proc.returncode, proc.stderr)
    assert not (tmp_path / "tb").exists()


def test_a_cut_keeps_what_is_left_and_drops_a_torn_record(tmp_path: Path) -> None:
    board = TensorBoardLog(tmp_path / "tb")
    for step in range(1, 6):
        board.episode({"total_steps": step, "reward": step * 10})
    board.close()
    (file,) = (tmp_path / "tb").glob("*tfevents*")
    whole = file.read_bytes()
    assert _points_up_to_step(tmp_path / "tb", tmp_path / "tb", 5)
    assert file.read_bytes() == whole  # nothing past step 5: the file is as it was
    # A fork's copy: the points up to step 2 under the same name, the source only read.
    (tmp_path / "fork").mkdir()
    _points_up_to_step(tmp_path / "tb", tmp_path / "fork", 2)
    assert points(tmp_path / "fork")["episode/reward"] == [(1, 10.0), (2, 20.0)]
    assert file.read_bytes() == whole
    file.write_bytes(whole + whole[-30:])  # a record cut short by a kill
    _points_up_to_step(tmp_path / "tb", tmp_path / "tb", 3)
    assert points(tmp_path / "tb")["episode/reward"] == [(1, 10.0), (2, 20.0), (3, 30.0)]
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == [file.name]


def test_norms_stay_on_the_device_of_their_inputs() -> None:
    import array_api_strict as xp

    device = xp.Device("device1")
    rng = np.random.default_rng(0)
    host = {k: rng.standard_normal(shape) for k, shape in (("W1", (3, 5)), ("W2", (3,)))}
    params = {k: xp.asarray(v, device=device) for k, v in host.items()}
    grads = {k: xp.asarray(2 * v, device=device) for k, v in host.items()}
    norms = weight_and_grad_norms(params, grads, xp)
    assert norms.shape == (4,) and norms.device == device
    want = [np.linalg.norm(host["W1"]), np.linalg.norm(host["W2"])]
    np.testing.assert_allclose(np.from_dlpack(norms.to_device(xp.Device("CPU_DEVICE"))),
                               [*want, 2 * want[0], 2 * want[1]], rtol=1e-12)  # fmt: skip


def test_help_names_the_flag_and_the_command() -> None:
    train = run_cli("train.py", "--help")
    assert "--tensorboard " in train.stdout and "--no-tensorboard" in train.stdout
    assert "tensorboard" in run_cli("--help").stdout


def test_a_failing_write_stops_the_curves_not_the_run(tmp_path: Path) -> None:
    said: list[str] = []
    board = TensorBoardLog(tmp_path, say=said.append)
    board.episode({"total_steps": 900, "reward": -21})

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    board._file.write_event = full
    board.episode({"total_steps": 1800, "reward": -20})
    board.episode({"total_steps": 2700, "reward": -19})  # no second message
    board.close()
    assert said == [
        f"TensorBoard logging stopped: cannot write {tmp_path}: No space left on device; "
        "training goes on (the metrics log has every episode)"
    ]
    assert points(tmp_path)["episode/reward"] == [(900, -21.0)]


def test_a_resume_keeps_tensorboard_on_unless_told(small_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = checkpoint.load(small_checkpoint)
    ckpt.config = replace(ckpt.config, tensorboard=True)
    saved = tmp_path / "run.npz"
    checkpoint.save(saved, ckpt)
    parser = argparse.ArgumentParser()
    cli.add_train_arguments(parser)

    def resumed(*flags: str) -> bool:
        args = parser.parse_args(["--resume", str(saved), "--device", "cpu", *flags])
        return cli.config_from_args(args).tensorboard

    assert resumed() is True
    assert resumed("--no-tensorboard") is False
