"""TensorBoard logging, read back with TensorBoard's own readers: live training, resume,
the log converter, and the refusals (no extra, unwritable or taken directory, bad
logs). Whose event files a resume may change: ``test_tensorboard_resume.py``."""

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
from conftest import ROOT, log_lines, log_record, run_cli, run_cli_without, unwritable
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from pongxp import checkpoint, cli, event_files
from pongxp.event_files import Plan
from pongxp.tensorboard_log import EPISODE_TAGS, NORM_TAGS, TensorBoardLog, weight_and_grad_norms

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
    proc = train_cli("--episodes", "4", *SMALL, "--tensorboard", str(tmp_path / "tb"))
    assert proc.returncode == 0, proc.stderr
    log = jsonl(tmp_path / "run.jsonl")
    acc = accumulate(tmp_path / "tb")
    steps = [r["total_steps"] for r in log]
    for key, tag in EPISODE_TAGS.items():
        got = acc.Scalars(tag)
        assert [p.step for p in got] == steps, tag
        np.testing.assert_allclose([p.value for p in got], [r[key] for r in log], rtol=1e-6)
    # Batches of 2: a point after episodes 2 and 4, at their step.
    for tag in BATCH_TAGS:
        assert [p.step for p in acc.Scalars(tag)] == [steps[1], steps[3]], tag
    last = {tag: acc.Scalars(tag)[-1].value for tag in BATCH_TAGS}
    ckpt = checkpoint.load(tmp_path / "run.npz")
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
    """Resumed from an older checkpoint, the run replays episodes 3-4: their first
    points must go, from the files themselves, not only from what a reader shows."""
    tb = tmp_path / "tb"
    flags = (*SMALL, "--checkpoint-every", "2", "--keep", "2")
    assert train_cli("--episodes", "4", *flags, "--tensorboard", str(tb)).returncode == 0
    first = points(tb)
    older = checkpoint.history_paths(tmp_path / "run.npz")[0]
    assert checkpoint.load(older).episode == 2
    # No --tensorboard: a resume writes where its checkpoint's run did.
    proc = train_cli("--episodes", "6", "--resume", str(older))
    assert proc.returncode == 0, proc.stderr
    log = jsonl(tmp_path / "run.jsonl")
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
    tb = tmp_path / "tb"
    flags = ("--hidden", "16", "--batch-size", "1", "--tensorboard", str(tb))
    died = train_cli("--episodes", "2", *flags, "--lr", "1e300")
    assert died.returncode == 3 and "no checkpoint had been written yet" in died.stderr
    assert list(tb.iterdir()) == []
    again = train_cli("--episodes", "1", *flags)  # no --overwrite needed
    assert again.returncode == 0, again.stderr
    assert len(points(tb)["episode/reward"]) == 1


def test_missing_extra_is_one_line_naming_the_install(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    log.write_text(log_lines(log_record(1)))
    for argv in (
        ("train", "--device", "cpu", "--hidden", "8", "--episodes", "1", "--tensorboard",
         str(tmp_path / "tb"), "--checkpoint", str(tmp_path / "r.npz"), "--metrics",
         str(tmp_path / "r.jsonl")),
        ("tensorboard", str(log), str(tmp_path / "tb")),
    ):  # fmt: skip
        proc = run_cli_without("tensorboardX", *argv)
        line = one_line(proc.returncode, proc.stderr)
        assert "needs tensorboardX" in line and "pip install -e '.[tensorboard]'" in line
        assert "episode" not in proc.stdout
    assert not (tmp_path / "tb").exists() and not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize("where", ["under a file", "read-only", "taken", "foreign"])
@pytest.mark.usefixtures("no_actors")
def test_a_directory_that_cannot_take_the_run_is_refused_before_any_episode(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tb = tmp_path / "tb"
    tb.mkdir()
    if where == "under a file":
        (tmp_path / "file").write_text("x")
        tb = tmp_path / "file" / "tb"
    elif where == "taken":  # by a pongxp run: its files end in time_ns
        (tb / "events.out.tfevents.1.host.1700000000000000000").write_bytes(b"")
    elif where == "foreign":  # pongxp never changes these, --overwrite or not
        (tb / "events.out.tfevents.1.host").write_bytes(b"not pongxp's")
    argv = ["--hidden", "8", "--device", "cpu", "--checkpoint", str(tmp_path / "r.npz"),
            "--metrics", str(tmp_path / "r.jsonl"), "--tensorboard", str(tb)]  # fmt: skip
    if where == "foreign":
        argv.append("--overwrite")
    if where == "read-only":
        with unwritable(tb):
            code = cli.train_main(argv)
    else:
        code = cli.train_main(argv)
    out, err = capsys.readouterr()
    line = one_line(code, err)
    if where == "taken":
        assert "already holds another run's event files" in line and "--overwrite" in line
    elif where == "foreign":
        assert "holds event files that pongxp did not write (events.out.tfevents.1.host)" in line
        assert (tb / "events.out.tfevents.1.host").read_bytes() == b"not pongxp's"
    else:
        assert line.startswith(f"error: cannot write TensorBoard event files {tb}/")
    assert "episode" not in out and not (tmp_path / "r.jsonl").exists()


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
    # Again: refused; with --overwrite, replaced (one point a step, not two).
    assert cli.main(["tensorboard", str(log), str(tb)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["tensorboard", str(log), str(tb), "--overwrite"]) == 0
    assert len(points(tb / "pong-v0")["episode/reward"]) == 40


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
    assert "the same file name" in one_line(proc.returncode, proc.stderr)
    assert not (tmp_path / "tb").exists()


def test_a_cut_keeps_what_is_left_drops_a_torn_record_and_no_other_file(tmp_path: Path) -> None:
    from tensorboardX import SummaryWriter

    owner = str(tmp_path / "run.npz")
    board = TensorBoardLog(Plan(tmp_path, owner))
    for step in range(1, 6):
        board.episode({"total_steps": step, "reward": step * 10})
    board.close()
    with SummaryWriter(str(tmp_path / "other")) as writer:  # not pongxp's, moved in
        writer.add_scalar("episode/reward", 99, 4)
    (foreign,) = (tmp_path / "other").glob("*tfevents*")
    foreign = foreign.rename(tmp_path / foreign.name)
    contents = event_files.read(tmp_path)
    assert contents.foreign == (foreign,) and Path(contents.owner) == Path(owner).resolve()
    (file,) = contents.ours
    whole, theirs = file.read_bytes(), foreign.read_bytes()

    def cut(keep_through: int) -> None:
        event_files.prepare(Plan(tmp_path, owner, keep_through, keep=contents.ours))

    cut(5)  # nothing past step 5: the file is left as it was
    assert file.read_bytes() == whole
    file.write_bytes(whole + whole[-30:])  # a record cut short by a kill
    cut(3)
    mine = [(s, v) for s, v in points(tmp_path)["episode/reward"] if v != 99]
    assert mine == [(1, 10.0), (2, 20.0), (3, 30.0)]
    assert foreign.read_bytes() == theirs
    event_files.remove(tmp_path, owner)
    assert sorted(tmp_path.iterdir()) == [foreign, tmp_path / "other"]


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
    assert "--tensorboard DIR" in train.stdout and "--no-tensorboard" in train.stdout
    assert "tensorboard" in run_cli("--help").stdout


def test_a_failing_write_stops_the_curves_not_the_run(tmp_path: Path) -> None:
    said: list[str] = []
    board = TensorBoardLog(Plan(tmp_path, str(tmp_path / "run.npz")), say=said.append)
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


def test_a_resume_takes_the_directory_from_its_checkpoint_unless_told(
    small_checkpoint: Path, tmp_path: Path
) -> None:
    ckpt = checkpoint.load(small_checkpoint)
    ckpt.config = replace(ckpt.config, tensorboard=str(tmp_path / "tb"))
    saved = tmp_path / "run.npz"
    checkpoint.save(saved, ckpt)
    parser = argparse.ArgumentParser()
    cli.add_train_arguments(parser)

    def resumed(*flags: str) -> str:
        args = parser.parse_args(["--resume", str(saved), "--device", "cpu", *flags])
        return cli.config_from_args(args).tensorboard

    assert resumed() == str(tmp_path / "tb")
    assert resumed("--tensorboard", str(tmp_path / "other")) == str(tmp_path / "other")
    assert resumed("--no-tensorboard") == ""
