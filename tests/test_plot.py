"""Learning-curve PNGs from real metrics logs; missing extra and bad logs give one line."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, log_lines, log_record, needs, run_cli, run_cli_without, train_small

from pongxp import cli
from pongxp.plot import PlotError, load_run

# Drawing needs the plot extra; PIL, to read the images back, comes with matplotlib.
PLOT = needs("matplotlib", "plot")

# matplotlib's default colours C0 and C1: the first and second run.
BLUE, ORANGE = (31, 119, 180), (255, 127, 14)


@pytest.fixture(scope="module")
def two_runs(small_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The session's 2-episode run, and a 3-episode run with another seed."""
    out = tmp_path_factory.mktemp("runs")
    train_small(out, "seed1", "--episodes", "3", "--seed", "1")
    return [small_checkpoint.with_name("metrics.jsonl"), out / "seed1"]  # a log, a run folder


def colour_pixels(png: Path, rgb: tuple[int, int, int]) -> int:
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    return int(np.all(pixels == rgb, axis=1).sum())


def image_format(data: bytes) -> str | None:
    """The format PIL reads in ``data``, e.g. "JPEG"."""
    from PIL import Image

    return Image.open(io.BytesIO(data)).format


@PLOT
def test_two_runs_on_one_png_of_the_asked_size(two_runs: list[Path], tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "curves" / "curve.png"
    proc = run_cli(
        "plot", *map(str, two_runs), "--label", "seed 0", "--label", "seed 1",
        "--size", "900x400", "-o", str(out), "--title", "test",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size == (900, 400)
    # Both runs are drawn (each panel has a bold line per run in its colour).
    assert colour_pixels(out, BLUE) > 50
    assert colour_pixels(out, ORANGE) > 50


@PLOT
def test_one_run_uses_one_colour(two_runs: list[Path], tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "one.png"
    proc = run_cli("plot", str(two_runs[1]), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as image:
        assert image.size == (1200, 450)
    assert colour_pixels(out, BLUE) > 50
    assert colour_pixels(out, ORANGE) == 0


def test_load_run_reads_the_log_columns(two_runs: list[Path]) -> None:
    run = load_run(two_runs[1])
    lines = [json.loads(line) for line in (two_runs[1] / "metrics.jsonl").read_text().splitlines()]
    assert run.label == "seed1"
    assert run.episode.tolist() == [1, 2, 3]
    assert run.reward.tolist() == [r["reward"] for r in lines]
    assert run.running_reward.tolist() == [r["running_reward"] for r in lines]
    assert np.all(np.diff(run.time) > 0)  # cumulative training seconds
    assert run.steps.tolist() == [r["total_steps"] for r in lines]


@PLOT
def test_panels_follow_x(two_runs: list[Path], tmp_path: Path) -> None:
    """One panel per --x axis; steps are the log's total_steps, in millions."""
    from matplotlib.figure import Figure

    drawn: list[Figure] = []
    real_savefig = Figure.savefig

    def keep(fig: Figure, *args: object, **kwargs: object) -> None:
        drawn.append(fig)
        real_savefig(fig, *args, **kwargs)

    out = tmp_path / "steps.png"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", keep)
        assert cli.plot_main([str(p) for p in two_runs] + ["--x", "steps", "-o", str(out)]) == 0
    (ax,) = drawn[0].axes
    assert ax.get_xlabel() == "emulator steps (millions)"
    want = np.asarray(load_run(two_runs[1]).steps) / 1e6
    bold = [line for line in ax.get_lines() if line.get_linewidth() == 2.0]
    np.testing.assert_allclose(bold[1].get_xdata(), want)
    assert out.stat().st_size > 0


def test_bad_x_axes_and_logs_without_steps_give_one_line(
    two_runs: list[Path], tmp_path: Path
) -> None:
    no_steps = tmp_path / "old.jsonl"  # not what pongxp writes: refused under every --x
    no_steps.write_text(log_lines(*(log_record(e, steps=None, total_steps=None) for e in (1, 2))))
    cases = [
        ([str(two_runs[0]), "--x", "frames"], "--x takes 1 to 3 different axes"),
        ([str(two_runs[0]), "--x", "time", "time"], "--x takes 1 to 3 different axes"),
        ([str(no_steps), "--x", "steps"], "is not a pongxp metrics log: no steps, total_steps"),
        ([str(no_steps), "--x", "episode"], "is not a pongxp metrics log: no steps, total_steps"),
    ]
    for argv, needle in cases:
        out = tmp_path / "x.png"
        proc = run_cli("plot", *argv, "-o", str(out))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr
        assert not out.exists()


@PLOT
def test_bad_metrics_files_give_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"loss": 1.0}\n')
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(bytes(range(128, 256)))
    nan = tmp_path / "nan.jsonl"  # json.dumps writes NaN, and reads it back
    nan.write_text(log_lines(*(log_record(e, reward=float("nan"), running_reward=float("nan"))
                               for e in (1, 2, 3))))  # fmt: skip
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    expected = {
        nan: "has no finite episode reward to plot",
        fifo: "is not a regular file",
        tmp_path / "missing.jsonl": "does not exist",
    }
    for path in (tmp_path / "missing.jsonl", empty, foreign, binary, nan, fifo):
        with pytest.raises(PlotError, match=str(path)) as raised:
            load_run(path)
        assert expected.get(path, "") in str(raised.value)
        proc = run_cli("plot", str(path), "-o", str(tmp_path / "x.png"))
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("error: ") and str(path) in proc.stderr
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_names_the_extra(two_runs: list[Path], tmp_path: Path) -> None:
    # Run the CLI in a Python where importing matplotlib fails, as if not installed.
    out = tmp_path / "x.png"
    proc = run_cli_without("matplotlib", "plot", str(two_runs[0]), "-o", str(out))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: plotting needs matplotlib, which is not installed; "
        f"pip install -e '.[plot]' in {ROOT}"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("suffix", "is_format"),
    [
        (".jpg", lambda data: image_format(data) == "JPEG"),
        (".svg", lambda data: b"<svg" in data[:1000]),
        (".pdf", lambda data: data.startswith(b"%PDF")),
    ],
)
@PLOT
def test_the_suffix_picks_the_format(
    suffix: str, is_format: Callable[[bytes], bool], two_runs: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / f"curve{suffix}"
    assert cli.plot_main([str(two_runs[0]), "-o", str(out)]) == 0
    assert is_format(out.read_bytes())


@pytest.mark.parametrize(
    ("output", "size", "message"),
    [
        # (the suffixes allowed are matplotlib's, so these checks need it)
        pytest.param("p", "1200x450", "plot file {tmp}/p has no suffix; end it in .png, .svg, "
                                      ".pdf or another of: ", marks=PLOT),
        pytest.param("p.xyz", "1200x450", "plot file {tmp}/p.xyz ends in '.xyz'; end it in .png",
                     marks=PLOT),
        ("p.png", "100000x100000", "--size width must be an integer from 200 to 10000, "
                                   "got 100000"),
        ("p.png", "9000000x200", "--size width must be an integer from 200 to 10000"),
        ("p.png", "1200x100", "--size height must be an integer from 150 to 10000, got 100"),
        ("p.png", "1200x", "--size must look like 1200x450, got '1200x'"),
        pytest.param("adir.png", "1200x450", "cannot write plot {tmp}/adir.png: it is a "
                     "directory", marks=PLOT),
    ],
)  # fmt: skip
def test_bad_names_and_sizes_are_one_line_before_any_log_is_read(
    output: str, size: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "adir.png").mkdir()
    missing = tmp_path / "missing.jsonl"  # read first, it would be the error instead
    code = cli.plot_main([str(missing), "-o", str(tmp_path / output), "--size", size])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: " + message.format(tmp=tmp_path)), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.png"]


def test_a_directory_is_not_a_metrics_log(tmp_path: Path) -> None:
    with pytest.raises(PlotError, match=f"metrics file {tmp_path} is a directory"):
        load_run(tmp_path)


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('"total_steps": "900"', 'line 2 has total_steps "900", not a count'),
        ('"total_steps": null', "line 2 has total_steps null, not a count"),
        ('"total_steps": [900]', "line 2 has total_steps [900], not a count"),
        ('"reward": "-21"', 'line 2 has reward "-21", not a number'),
    ],
)
@PLOT
def test_a_log_with_bad_values_is_one_line_naming_the_line_and_nothing_is_written(
    line: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under every --x (steps used to give a traceback), before anything is drawn."""
    good = log_record(1)
    key = line.split(":")[0][1:-1]
    bad = json.dumps({k: v for k, v in {**good, "episode": 2}.items() if k != key})
    bad = bad[:-1] + ", " + line + "}"
    log = tmp_path / "bad.jsonl"
    log.write_text(json.dumps(good) + "\n" + bad + "\n")
    out = tmp_path / "x.png"
    for x in ("steps", "time", "episode"):
        assert cli.plot_main([str(log), "--x", x, "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {log} {needle}; fix or remove that line\n", err
    assert not out.exists()
