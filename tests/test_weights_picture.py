"""``pongxp weights``: rows of W1 as 80x80 tiles in a PNG; bad input is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli_without, unwritable
from PIL import Image

from pongxp import checkpoint, cli
from pongxp.weights_picture import GAP, tile_grid

STEP = 80 + GAP  # a tile and the line after it


def tile(image: np.ndarray, row: int, col: int) -> np.ndarray:
    """The 80x80 RGB tile at grid position (row, col)."""
    top, left = GAP + row * STEP, GAP + col * STEP
    return image[top : top + 80, left : left + 80]


def test_each_weight_is_drawn_at_its_pixel_scaled_per_unit() -> None:
    w1 = np.zeros((3, 6400), dtype=np.float32)
    w1[0, 5 * 80 + 7] = 2.0  # unit 0: one positive weight at row 5, column 7
    w1[1, 79 * 80 + 0] = -0.5  # unit 1: its largest weight is negative ...
    w1[1, 40 * 80 + 60] = 0.25  # ... so this one is half-way to white
    image = tile_grid(w1, columns=2)  # unit 2 (all zero) wraps to the second row
    assert image.shape == (2 * STEP + GAP, 2 * STEP + GAP, 3) and image.dtype == np.uint8
    first, second, third = tile(image, 0, 0), tile(image, 0, 1), tile(image, 1, 0)
    for t in (first, second, third):  # grey: all three channels equal
        assert np.array_equal(t[..., 0], t[..., 1]) and np.array_equal(t[..., 0], t[..., 2])
    assert first[5, 7, 0] == 255 and np.count_nonzero(first[..., 0] != 128) == 1
    assert second[79, 0, 0] == 0 and second[40, 60, 0] == 191  # 127.5 + 127.5 * 0.5, rounded
    assert np.count_nonzero(second[..., 0] != 128) == 2
    assert np.all(third == 128)  # a unit with no weights stays grey, not NaN
    # The empty fourth place and the lines between tiles are not grey.
    blue = image[0, 0]
    assert blue[2] > blue[0] and np.all(tile(image, 1, 1) == blue)
    assert np.all(image[:, STEP] == blue) and np.all(image[STEP, :] == blue)


def test_units_and_columns_choose_the_grid() -> None:
    w1 = np.random.default_rng(0).standard_normal((30, 6400))
    assert tile_grid(w1, units=7, columns=3).shape == (3 * STEP + GAP, 3 * STEP + GAP, 3)
    assert tile_grid(w1, units=7, columns=20).shape == (STEP + GAP, 7 * STEP + GAP, 3)
    assert np.array_equal(tile_grid(w1, units=1), tile_grid(w1[:1]))


def test_the_command_writes_into_runs_by_default(
    small_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["weights", str(small_checkpoint), "--scale", "2"]) == 0
    out = Path("runs", "small-weights.png")
    hidden = checkpoint.load(small_checkpoint).params["W1"].shape[0]
    assert capsys.readouterr().out.startswith(f"wrote {out}: {hidden} hidden units")
    with Image.open(out) as png:
        assert png.format == "PNG"
        pixels = np.asarray(png.convert("RGB"))
    assert pixels.shape == (2 * (STEP + GAP), 2 * (hidden * STEP + GAP), 3)
    w1 = checkpoint.load(small_checkpoint).params["W1"]
    # Unit 3's largest weight is full white (positive) or black (negative), in the fourth tile.
    r, c = divmod(int(np.argmax(np.abs(w1[3]))), 80)
    expected = 255 if w1[3, r * 80 + c] > 0 else 0
    assert tuple(pixels[2 * (GAP + r), 2 * (GAP + 3 * STEP + c)]) == (expected,) * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # no temporary file left


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--units", "0"), "--units must be an integer from 1 to 16 (the network has 16 "
                           "hidden units), got 0"),
        (("--units", "17"), "--units must be an integer from 1 to 16"),
        (("--columns", "0"), "--columns must be a positive integer, got 0"),
        (("--scale", "9"), "--scale must be an integer from 1 to 8, got 9"),
        (("-o", "{tmp}/w.jpg"), "the weights picture {tmp}/w.jpg must end in .png"),
        (("-o", "{tmp}/adir.png"), "cannot write weights picture {tmp}/adir.png: it is a "
                                   "directory"),
    ],
)  # fmt: skip
def test_bad_flags_are_one_line(
    flags: tuple[str, ...],
    message: str,
    small_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "adir.png").mkdir()
    given = [f.format(tmp=tmp_path) for f in flags]
    if "-o" not in flags:
        given += ["-o", str(tmp_path / "w.png")]
    code = cli.weights_main([str(small_checkpoint), *given])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: " + message.format(tmp=tmp_path)), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.png"]


def test_bad_files_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    for path, message in [
        (tmp_path / "missing.npz", "does not exist"),
        (foreign, "is not a pongxp checkpoint: missing"),
    ]:
        code = cli.weights_main([str(path), "-o", str(tmp_path / "w.png")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "w.png").exists()


def test_unwritable_directory_is_one_line(
    small_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ro" / "w.png"
    out.parent.mkdir()
    with unwritable(out.parent):
        code = cli.weights_main([str(small_checkpoint), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: cannot write weights picture {out}: "), err
    assert err.count("\n") == 1 and list(out.parent.iterdir()) == []


def test_missing_pillow_names_the_extra(small_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.png"
    proc = run_cli_without("PIL", "weights", str(small_checkpoint), "-o", str(out))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: the weights picture needs PIL, which is not installed; "
        f"pip install -e '.[plot]' in {ROOT}"
    )
    assert not out.exists()
