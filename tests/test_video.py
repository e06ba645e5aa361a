"""Videos from real episodes: decoded frame counts match the game's emulator frames.

The expected counts are computed apart from the recorder: the same game is
played again by a fresh actor with the same seed and weights, without any
recording, and the ALE's episode frame counter is read at its end.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, needs, run_cli, run_cli_without, unwritable

from pongxp import checkpoint, cli
from pongxp.evaluate import load_actor
from pongxp.rollout import Actor
from pongxp.video import recording_seed

# Recording needs the video extra: imageio (with PIL, which reads GIFs back here) and,
# for MP4, imageio-ffmpeg's binary.
VIDEO = needs("imageio", "video")
FFMPEG = needs("imageio_ffmpeg", "video")


def emulator_frames(actor: Actor) -> int:
    """Emulator frames of one unrecorded episode played by ``actor``."""
    try:
        actor.play()
        return int(actor.env.unwrapped.ale.getEpisodeFrameNumber())
    finally:
        actor.close()


def decode_mp4(path: Path) -> tuple[int, tuple[int, ...], dict, np.ndarray]:
    """(frames decoded, frame shape, metadata, frame 100)."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        meta = reader.get_meta_data()
        count, shape, sample = 0, (), np.empty(0)
        for frame in reader:
            if count == 100:
                sample = frame
            count += 1
            shape = frame.shape
    finally:
        reader.close()
    return count, shape, meta, sample


def gif_frames(path: Path) -> tuple[int, int, tuple[int, int]]:
    """(frames stored, total duration in ms, size) of a GIF."""
    from PIL import Image

    with Image.open(path) as image:
        stored, total = 0, 0
        for index in range(image.n_frames):
            image.seek(index)
            total += image.info["duration"]
            stored += 1
        return stored, total, image.size


@VIDEO
@FFMPEG
def test_mp4_at_game_speed_with_input_panel(small_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "play.mp4"
    proc = run_cli(
        "video", str(small_checkpoint), "-o", str(out), "--seed", "7",
        "--show-input", "--scale", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    expected = emulator_frames(load_actor(small_checkpoint, seed=7)[0])
    count, shape, meta, sample = decode_mp4(out)
    assert count == expected  # one video frame per emulator frame
    assert meta["fps"] == 60
    assert meta["duration"] == pytest.approx(expected / 60, abs=0.05)
    assert shape == (210, 160 + 4 + 160, 3)
    assert f"{expected} frames at 60 fps" in proc.stdout
    # The right panel is the input: mostly the grey of "no change" over the field.
    field = sample[40:190, 164 + 10 : 164 + 150].astype(np.int64)
    assert np.median(field) == pytest.approx(128, abs=4)
    assert np.abs(sample[40:190, :150].astype(np.int64) - 128).mean() > 10  # the screen is not


@VIDEO
def test_gif_at_20_fps_cut_to_max_seconds(small_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "play.gif"
    proc = run_cli("video", str(small_checkpoint), "-o", str(out), "--max-seconds", "4")
    assert proc.returncode == 0, proc.stderr
    stored, total_ms, size = gif_frames(out)
    assert size == (160, 210)  # scale 1 by default for GIF, no panel
    assert total_ms == 4 * 1000  # 80 frames of 50 ms
    assert 1 < stored <= 80  # identical neighbours are merged into longer frames


@VIDEO
def test_speed_shows_the_same_game_k_times_faster(small_checkpoint: Path, tmp_path: Path) -> None:
    lengths = {}
    for speed in (1, 3):
        out = tmp_path / f"x{speed}.gif"
        proc = run_cli("video", str(small_checkpoint), "-o", str(out), "--speed", str(speed))
        assert proc.returncode == 0, proc.stderr
        assert "episode reward" in proc.stdout
        lengths[speed] = gif_frames(out)[1]  # ms of video
    # The same game (same seed): a third of the video, up to one frame's rounding.
    assert abs(lengths[3] - lengths[1] / 3) <= 50, lengths
    bad = run_cli("video", str(small_checkpoint), "-o", str(tmp_path / "y.gif"), "--speed", "0")
    assert bad.returncode == 2 and "--speed" in bad.stderr


@VIDEO
def test_gif_fallback_without_ffmpeg(small_checkpoint: Path, tmp_path: Path) -> None:
    asked = tmp_path / "play.mp4"
    proc = run_cli_without("imageio_ffmpeg", "video", str(small_checkpoint), "-o", str(asked))
    assert proc.returncode == 0, proc.stderr
    assert f"for MP4: pip install -e '.[video]' in {ROOT}" in proc.stderr
    assert not asked.exists()
    expected = emulator_frames(load_actor(small_checkpoint, seed=0)[0])
    _, total_ms, _ = gif_frames(asked.with_suffix(".gif"))
    assert total_ms == math.ceil(expected / 3) * 50  # every third emulator frame, 50 ms each


def test_missing_imageio_names_the_extra(small_checkpoint: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "v.mp4")
    proc = run_cli_without("imageio", "video", str(small_checkpoint), "-o", out)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: video needs imageio, which is not installed; pip install -e '.[video]' in {ROOT}"
    )


def test_bad_video_name_is_one_line(small_checkpoint: Path, tmp_path: Path) -> None:
    proc = run_cli("video", str(small_checkpoint), "-o", str(tmp_path / "play.avi"))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == f"error: video file {tmp_path / 'play.avi'} must end in .mp4 or .gif"
    )


@VIDEO
@FFMPEG
def test_video_every_records_without_changing_training(
    small_checkpoint: Path, train_cli, tmp_path: Path
) -> None:
    """Same flags as the session's small checkpoint, plus --video-every 2."""
    import imageio.v2 as imageio
    import imageio_ffmpeg

    proc = train_cli(
        "--episodes", "2", "--batch-size", "1", "--hidden", "16", "--video-every", "2"
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    video = tmp_path / "run" / "videos" / "ep000002.mp4"
    assert f"video: {video}" in proc.stdout
    assert sorted(p.name for p in video.parent.iterdir()) == ["ep000002.mp4"]

    # Training is bit-identical to the run without videos.
    with_video, without = checkpoint.load(tmp_path / "run"), checkpoint.load(small_checkpoint)
    for name in ("W1", "W2"):
        np.testing.assert_array_equal(with_video.params[name], without.params[name])
        np.testing.assert_array_equal(with_video.cache[name], without.cache[name])
    assert with_video.streams == without.streams

    def logged(path: Path) -> list[tuple[int, int, int]]:
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        return [(r["episode"], r["reward"], r["steps"]) for r in lines]

    assert logged(tmp_path / "run" / "metrics.jsonl") == logged(
        small_checkpoint.with_name("metrics.jsonl")
    )

    # The video is the game of the weights after episode 2, on its own seed.
    import array_api_compat.numpy as xp

    actor = Actor("Pong-v0", recording_seed(0, 2), xp)
    actor.set_weights(with_video.params["W1"], with_video.params["W2"])
    # ffmpeg decodes every frame (to a null sink: faster than piping them here).
    count, _ = imageio_ffmpeg.count_frames_and_secs(video)
    assert count == emulator_frames(actor)
    reader = imageio.get_reader(video, format="FFMPEG")
    try:
        assert reader.get_data(0).shape == (420, 320, 3)  # scale 2, screen only
    finally:
        reader.close()


def test_video_every_must_not_be_negative(train_cli) -> None:
    proc = train_cli("--episodes", "1", "--video-every", "-1")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --video-every must be an integer >= 0 (0: off), got -1"


@VIDEO
@FFMPEG  # (without it the recorder says first that it writes GIFs)
def test_training_video_that_cannot_be_written_is_skipped(
    small_checkpoint: Path, tmp_path: Path
) -> None:
    from pongxp.video import TrainingRecorder

    ckpt = checkpoint.load(small_checkpoint)
    cfg = replace(ckpt.config, video_every=2)
    videos = tmp_path / "videos"
    videos.write_text("a file where the video folder would go")
    said: list[str] = []
    recorder = TrainingRecorder(cfg, videos, start_episode=0, say=said.append)
    assert recorder.after_batch(1, ckpt.params, np.asarray) is None  # 2 not reached yet
    assert said == []
    assert recorder.after_batch(3, ckpt.params, np.asarray) is None  # due, but cannot write
    assert len(said) == 1
    assert said[0].startswith("video skipped at episode 3: cannot write video ")
    assert said[0].endswith("training goes on")


@pytest.fixture
def no_game(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if an emulator is started: the checks must come before any play."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a game was started before the options were checked")

    monkeypatch.setattr("pongxp.evaluate.Actor", refuse)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--max-seconds", "nan"), "--max-seconds must be a finite number > 0 (leave it out "
                                   "for the whole game), got nan"),
        (("--max-seconds", "inf"), "--max-seconds must be a finite number > 0 (leave it out "
                                   "for the whole game), got inf"),
        (("--max-seconds", "0"), "--max-seconds must be a finite number > 0 (leave it out "
                                 "for the whole game), got 0.0"),
        (("--scale", "1000"), "--scale must be an integer from 1 to 8, got 1000"),
        (("--scale", "0"), "--scale must be an integer from 1 to 8, got 0"),
        (("--seed", "-1"), "--seed must be an integer >= 0, got -1"),
    ],
)  # fmt: skip
def test_bad_numbers_are_one_line_before_any_play(
    flags: tuple[str, ...],
    message: str,
    small_checkpoint: Path,
    tmp_path: Path,
    no_game: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "v.gif"
    code = cli.video_main([str(small_checkpoint), "-o", str(out), *flags])
    assert (code, capsys.readouterr().err) == (2, f"error: {message}\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [pytest.param(".mp4", marks=FFMPEG), ".gif"])
@VIDEO
def test_unwritable_video_path_is_one_line_before_any_play(
    suffix: str,
    small_checkpoint: Path,
    tmp_path: Path,
    no_game: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "ro" / f"v{suffix}"
    out.parent.mkdir()
    with unwritable(out.parent):
        code = cli.video_main([str(small_checkpoint), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: cannot write video {out}: ") and err.count("\n") == 1, err
    assert err.endswith("; choose a writable path\n"), err
    assert list(out.parent.iterdir()) == []


def test_the_input_panel_is_captioned_outside_what_the_network_sees() -> None:
    from pongxp.preprocess import BOTTOM, TOP
    from pongxp.video import _caption, input_panel

    panel = input_panel(np.array([0, 6399]), np.array([1, -1], dtype=np.int8))
    caption = np.all(panel == (200, 200, 200), axis=-1)
    above, below = caption[:TOP], caption[BOTTOM:]
    # Each band holds exactly its caption's lit pixels; the field none.
    assert above.sum() == _caption("NETWORK INPUT").sum() > 0
    assert below.sum() == _caption("FRAME DIFFERENCE").sum() > 0
    assert not caption[TOP:BOTTOM].any()
