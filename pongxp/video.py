"""Videos of the agent playing, at the game's real speed.

Frame rate. The Atari 2600 (NTSC) draws 60 frames a second and the ALE
emulates it frame by frame, but one agent step of Pong-v0 spans 2, 3 or 4 of
those frames (a random frameskip) and v4/v5 envs other fixed counts. A video
with one image per agent step would therefore run at a wrong and uneven
speed. Instead each screen the agent saw is held for exactly as many emulator
frames as its step lasted (read from the ALE's episode frame counter), and the
result is sampled onto the video's clock:

- MP4 (H.264 via the ffmpeg binary from imageio-ffmpeg): 60 fps, one video
  frame per emulator frame, so an episode of F emulator frames gives F video
  frames and lasts F / 60 seconds, like the game.
- GIF (the fallback when no ffmpeg is installed): 20 fps, every third emulator
  frame, because GIF delays are whole centiseconds and viewers slow down
  anything under 2 cs; ceil(F / 3) frames, same duration. The GIF encoder
  merges identical consecutive frames into one longer frame, so count GIF
  frames by their durations (50 ms each).

The screen at the end of the last step (the final score) is not shown: the
actor reports the screen it decides on, and no decision follows the last one.

The optional input panel beside the screen is the network's input at that
step: the 80x80 difference frame (+1 white where a pixel appeared, -1 black
where one vanished, 0 grey), each input pixel drawn 2x2 over the rows of the
screen it was cropped from. Captions in the bands above and below, which the
network never sees, say what it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pongxp.checkpoint import check_writable, replaced_whole
from pongxp.config import TrainConfig, check_number
from pongxp.extras import install_hint, require
from pongxp.preprocess import BOTTOM, TOP
from pongxp.rollout import Actor, EpisodeStats
from pongxp.run_folder import name_of

GAME_FPS = 60  # NTSC Atari 2600 frames a second, the ALE's unit of time
FPS = {"mp4": 60, "gif": 20}
SEPARATOR = 4  # black columns between the screen and the input panel
# Upscale limit: at 8 a frame with the panel is already 1680x2592 pixels (13 MB);
# beyond that only memory (GIF frames are kept until the end) and encode time grow.
MAX_SPEED = 16  # faster skips most of what happens
MAX_SCALE = 8

# Input-panel colours (RGB).
_PANEL_ZERO = np.array([128, 128, 128], dtype=np.uint8)
_PANEL_UP = np.array([255, 255, 255], dtype=np.uint8)  # +1: a pixel appeared
_PANEL_DOWN = np.array([0, 0, 0], dtype=np.uint8)  # -1: a pixel vanished
_PANEL_OUTSIDE = np.array([40, 40, 40], dtype=np.uint8)  # rows the network never sees


class VideoError(ValueError):
    """A video cannot be made as asked (bad option, unwritable file)."""


def check_options(
    scale: int | None = None, max_seconds: float | None = None, speed: int = 1
) -> None:
    """Check ``--scale``, ``--max-seconds`` and ``--speed`` before anything is played.

    Raises:
        ConfigError: one line naming the flag and the allowed values.
    """
    if scale is not None:
        check_number("--scale", scale, 1, MAX_SCALE)
    check_number("--speed", speed, 1, MAX_SPEED)
    if max_seconds is not None:
        check_number(
            "--max-seconds",
            max_seconds,
            0,
            integer=False,
            above=True,
            note=" (leave it out for the whole game)",
        )


# A 3x5 pixel font for the panel's captions: no font file, no text library.
_GLYPHS = {
    "A": ("010", "101", "111", "101", "101"),
    "C": ("011", "100", "100", "100", "011"),
    "D": ("110", "101", "101", "101", "110"),
    "E": ("111", "100", "110", "100", "111"),
    "F": ("111", "100", "110", "100", "100"),
    "I": ("111", "010", "010", "010", "111"),
    "K": ("101", "101", "110", "101", "101"),
    "M": ("101", "111", "111", "101", "101"),
    "N": ("110", "101", "101", "101", "101"),
    "O": ("010", "101", "101", "101", "010"),
    "P": ("110", "101", "110", "100", "100"),
    "R": ("110", "101", "110", "101", "101"),
    "T": ("111", "010", "010", "010", "010"),
    "U": ("101", "101", "101", "101", "111"),
    "W": ("101", "101", "111", "111", "101"),
    " ": ("000", "000", "000", "000", "000"),
}
CAPTIONS = ("NETWORK INPUT", "FRAME DIFFERENCE")  # above and below the 80x80 field
_CAPTION_COLOUR = np.array([200, 200, 200], dtype=np.uint8)


def _caption(text: str, scale: int = 2) -> np.ndarray:
    """(5*scale, 4*len(text)*scale) bool mask of ``text`` in the 3x5 font."""
    rows = ["0".join(_GLYPHS[c][r] for c in text) + "0" for r in range(5)]
    mask = np.array([[bit == "1" for bit in row] for row in rows])
    return mask.repeat(scale, axis=0).repeat(scale, axis=1)


def _draw_centred(image: np.ndarray, mask: np.ndarray, top: int, bottom: int) -> None:
    h, w = mask.shape
    y = top + (bottom - top - h) // 2
    x = (image.shape[1] - w) // 2
    image[y : y + h, x : x + w][mask] = _CAPTION_COLOUR


def input_panel(cols: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """The network input of one step, drawn at screen scale.

    Args:
        cols: (k,) int indices into the 6400 inputs where the difference is non-zero.
        signs: (k,) int8, +1 or -1, the difference there.

    Returns:
        (210, 160, 3) uint8 image aligned with the 210x160 screen.
    """
    grid = np.broadcast_to(_PANEL_ZERO, (6400, 3)).copy()
    grid[cols[signs > 0]] = _PANEL_UP
    grid[cols[signs < 0]] = _PANEL_DOWN
    field = grid.reshape(80, 80, 3).repeat(2, axis=0).repeat(2, axis=1)  # (160, 160, 3)
    panel = _PANEL_BACKGROUND.copy()
    panel[TOP:BOTTOM] = field
    return panel


def _panel_background() -> np.ndarray:
    panel = np.broadcast_to(_PANEL_OUTSIDE, (210, 160, 3)).copy()
    above, below = CAPTIONS
    _draw_centred(panel, _caption(above), 0, TOP)
    _draw_centred(panel, _caption(below), BOTTOM, 210)
    return panel


_PANEL_BACKGROUND = _panel_background()  # drawn once: every frame shares it


def compose(
    screen: np.ndarray,
    cols: np.ndarray | None = None,
    signs: np.ndarray | None = None,
    scale: int = 1,
) -> np.ndarray:
    """One video frame: the screen, optionally the input panel beside it, upscaled.

    Args:
        screen: (210, 160, 3) uint8 RGB.
        cols, signs: the step's network input (see ``input_panel``); None for
            the screen alone.
        scale: integer upscale, nearest neighbour (keeps the pixels sharp).

    Returns:
        (210*scale, W*scale, 3) uint8, W = 160 or 160 + 4 + 160 with the panel.
        Both sides are even, as H.264 in yuv420p needs.
    """
    frame = screen
    if cols is not None and signs is not None:
        gap = np.zeros((210, SEPARATOR, 3), dtype=np.uint8)
        frame = np.concatenate([screen, gap, input_panel(cols, signs)], axis=1)
    if scale != 1:
        frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
    return np.ascontiguousarray(frame)


# -- writers -------------------------------------------------------------------


class Writer(Protocol):
    fps: int

    def append(self, frame: np.ndarray) -> None: ...
    def close(self) -> None: ...


class Mp4Writer:
    """H.264 MP4 through imageio's ffmpeg plugin, streamed (no frames kept)."""

    def __init__(self, path: Path, fps: int) -> None:
        imageio = require("imageio.v2", "video", "MP4 video")
        self.fps = fps
        self._writer = imageio.get_writer(
            path,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            quality=None,  # libx264's default quality (CRF 23): flat Atari colours stay clean
            macro_block_size=2,  # frames are already even-sized; never rescale them
            ffmpeg_log_level="error",
            # veryfast: a game is thousands of frames; "-f mp4": the name is a temporary one.
            output_params=["-preset", "veryfast", "-tune", "animation", "-f", "mp4"],
        )

    def append(self, frame: np.ndarray) -> None:
        self._writer.append_data(frame)

    def close(self) -> None:
        self._writer.close()


class GifWriter:
    """Animated GIF through Pillow (installed with imageio).

    GIF has no streaming encoder in Pillow, so frames are kept until
    ``close()``, as palette images (1 byte a pixel, ~34 KB a frame at scale 1
    without the panel, ~1,200 frames for a one-minute game).
    """

    def __init__(self, path: Path, fps: int) -> None:
        require("imageio", "video", "video")
        self._image = require("PIL.Image", "video", "GIF video")
        self.fps = fps
        self.path = path
        self._frames: list[Any] = []

    def append(self, frame: np.ndarray) -> None:
        image = self._image.fromarray(frame)
        # Atari screens have < 128 colours, so an adaptive palette is exact.
        self._frames.append(image.convert("P", palette=self._image.Palette.ADAPTIVE))

    def close(self) -> None:
        if not self._frames:
            raise VideoError("no frames to write")
        first, *rest = self._frames
        first.save(
            self.path,
            format="GIF",
            save_all=True,
            append_images=rest,
            duration=1000 // self.fps,
            loop=0,
        )
        self._frames.clear()


def ffmpeg_available() -> tuple[bool, str]:
    """(usable, reason): imageio-ffmpeg is installed and finds an ffmpeg binary."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except ImportError:
        return False, "imageio-ffmpeg is not installed"
    except RuntimeError as exc:  # installed, but no binary for this platform
        return False, str(exc).splitlines()[0]
    return True, "ok"


def choose_format(output: Path) -> tuple[str, Path, str | None]:
    """Pick MP4 or GIF from ``output``'s suffix.

    ``.gif`` gives GIF. ``.mp4`` gives MP4 when ffmpeg is usable, else GIF
    beside the asked-for name, with a note saying so.

    Returns:
        (format, path to write, note or None).

    Raises:
        MissingExtraError: imageio is not installed.
        VideoError: another suffix.
    """
    suffix = output.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise VideoError(f"video file {output} must end in .mp4 or .gif")
    require("imageio", "video", "video")
    if suffix == ".gif":
        return "gif", output, None
    usable, reason = ffmpeg_available()
    if not usable:
        gif = output.with_suffix(".gif")
        note = (
            f"no MP4 encoder ({reason}); writing GIF {gif} instead; "
            f"for MP4: {install_hint('video')}"
        )
        return "gif", gif, note
    return "mp4", output, None


def open_writer(fmt: str, path: Path, fps: int | None = None) -> Writer:
    fps = fps or FPS[fmt]
    if GAME_FPS % fps:
        raise VideoError(f"video fps must divide {GAME_FPS}, got {fps}")
    return Mp4Writer(path, fps) if fmt == "mp4" else GifWriter(path, fps)


# -- recording -----------------------------------------------------------------


class EpisodeRecorder:
    """An ``Actor.play`` ``on_frame`` callback that writes frames at game speed.

    Each call brings the screen the agent is about to act on; the call after
    it (or ``finish``) tells, through the ALE's episode frame counter, how many
    emulator frames that screen stayed up. Video frame k shows the screen of
    emulator frame k * (60 / fps).
    """

    def __init__(
        self,
        writer: Writer,
        ale: Any,
        show_input: bool = False,
        scale: int = 1,
        max_frames: int | None = None,
        speed: int = 1,
    ) -> None:
        self.writer = writer
        self.ale = ale
        self.show_input = show_input
        self.scale = scale
        self.max_frames = max_frames
        self.stride = speed * GAME_FPS // writer.fps  # emulator frames per video frame
        self.frames = 0  # video frames written
        self.emulator_frames = 0  # emulator frames covered so far
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __call__(self, screen: np.ndarray, cols: np.ndarray, signs: np.ndarray) -> None:
        self._flush(self.ale.getEpisodeFrameNumber())
        # Copies: the emulator may reuse its buffers for the next step.
        self._pending = (screen.copy(), cols.copy(), signs.copy())

    def finish(self) -> None:
        """Write the last screen; call after ``play`` returns, before the next reset."""
        self._flush(self.ale.getEpisodeFrameNumber())
        self._pending = None

    def _flush(self, now: int) -> None:
        if self._pending is not None:
            # Video frames k whose time k * stride falls in [start, now).
            count = _ceil_div(now, self.stride) - _ceil_div(self.emulator_frames, self.stride)
            if self.max_frames is not None:
                count = min(count, self.max_frames - self.frames)
            if count > 0:
                screen, cols, signs = self._pending
                if not self.show_input:
                    cols = signs = None
                frame = compose(screen, cols, signs, self.scale)
                for _ in range(count):
                    self.writer.append(frame)
                self.frames += count
        self.emulator_frames = now


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Recording:
    """What ``record`` wrote."""

    path: Path
    format: str
    fps: int
    frames: int  # video frames written
    emulator_frames: int  # emulator frames the episode lasted
    stats: EpisodeStats  # the episode's reward, steps, seconds

    @property
    def seconds(self) -> float:
        """Length of the video (the GIF may store fewer, longer frames)."""
        return self.frames / self.fps


def record(
    actor: Actor,
    output: str | os.PathLike[str],
    greedy: bool = False,
    show_input: bool = False,
    scale: int | None = None,
    max_seconds: float | None = None,
    say: Callable[[str], None] | None = None,
    speed: int = 1,
) -> Recording:
    """Play one episode with ``actor`` (weights set) and write its video.

    The file is written under a temporary name and renamed at the end, so an
    interrupted recording leaves no half-written video.

    Args:
        output: a ``.mp4`` or ``.gif`` path (see ``choose_format``).
        greedy: take the more likely action instead of sampling.
        show_input: put the network's input beside the screen.
        scale: integer upscale; default 2 for MP4, 1 for GIF (GIF frames are
            kept in memory until the end).
        max_seconds: stop the video (not the episode) after this long.
        say: where to print a note when falling back to GIF.
        speed: show the game this many times faster (every ``speed``-th video
            frame of the game's own speed), e.g. a whole game in a short GIF.

    Raises:
        ConfigError: a bad ``scale`` or ``max_seconds``.
        MissingExtraError, VideoError: also an unwritable ``output``, found
            before the episode is played.
    """
    check_options(scale, max_seconds, speed)
    fmt, path, note = choose_format(Path(output))
    scale = scale if scale is not None else (2 if fmt == "mp4" else 1)
    # Now, not after a whole game (a GIF is written only at the end), and in
    # our words, not ffmpeg's ("Broken pipe").
    check_writable(path, "video", VideoError)
    if note and say is not None:
        say(note)
    with replaced_whole(path, "video", VideoError) as tmp:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = open_writer(fmt, tmp)
        max_frames = None if max_seconds is None else max(1, round(max_seconds * writer.fps))
        ale = actor.env.unwrapped.ale
        recorder = EpisodeRecorder(writer, ale, show_input, scale, max_frames, speed)
        try:
            _, stats = actor.play(greedy=greedy, on_frame=recorder)
            recorder.finish()
        finally:
            writer.close()
    return Recording(path, fmt, writer.fps, recorder.frames, recorder.emulator_frames, stats)


def record_checkpoint(
    checkpoint_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    seed: int = 0,
    env_id: str | None = None,
    **options: Any,
) -> Recording:
    """Video of one episode played by a checkpoint's policy.

    Args:
        output: ``.mp4`` or ``.gif``; default ``runs/<run or checkpoint name>.mp4``.
        seed: seeds the emulator and the action sampler (same seed, same game).
        env_id: play this env instead of the checkpoint's.
        options: ``greedy``, ``show_input``, ``scale``, ``max_seconds``, ``say``
            as for ``record``.

    Raises:
        CheckpointError, ConfigError, EnvError, MissingExtraError, VideoError:
            one line each, all but a failing write before the episode is played.
    """
    from pongxp.evaluate import load_actor

    check_number("--seed", seed, 0)
    check_options(options.get("scale"), options.get("max_seconds"))
    # Into runs/, like every default output: a tracked folder such as pretrained/
    # should not fill up with videos.
    output = Path(output) if output is not None else Path("runs", name_of(checkpoint_path) + ".mp4")
    _, path, _ = choose_format(output)  # a missing extra or bad name fails here
    check_writable(path, "video", VideoError)
    actor, _ = load_actor(checkpoint_path, seed, env_id)
    try:
        return record(actor, output, **options)
    finally:
        actor.close()


# -- during training -----------------------------------------------------------


def recording_seed(seed: int, episode: int) -> int:
    """Seed of the video episode after training ``episode``: its own stream,
    apart from the training's (``workers.stream_seed``)."""
    return int(np.random.SeedSequence((seed, episode, 0x766964)).generate_state(1)[0])


class TrainingRecorder:
    """``--video-every K``: a video of one episode each time training passes K episodes.

    The episode is played by a separate emulator and sampler, seeded from
    (run seed, episode), with the weights just committed and sampled actions
    as in training, so the training's own random streams, results and
    checkpoints are the same with or without videos.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        folder: Path,
        start_episode: int,
        say: Callable[[str], None] | None = None,
    ) -> None:
        """Record into ``folder`` (the run's ``videos/``)."""
        self.cfg = cfg
        self.folder = folder
        self.every = cfg.video_every
        self.last = start_episode
        self.say = say
        # Check the extras now, not K episodes into the run.
        self.format, _, note = choose_format(Path("x.mp4"))
        if note and say is not None:
            say(note)

    def after_batch(
        self, episode: int, params: dict[str, Any], to_host: Callable[[Any], np.ndarray]
    ) -> Recording | None:
        """Record if a multiple of K lies in (last call's episode, ``episode``].

        A video that cannot be written (disk full, say) is reported and
        skipped: videos are a side output and must not end a training run.
        """
        due = episode // self.every > self.last // self.every
        self.last = episode
        if not due:
            return None
        import array_api_compat.numpy as xp  # actors always run on the host

        say = self.say or (lambda _text: None)
        actor = Actor(
            self.cfg.env_id, recording_seed(self.cfg.seed, episode), xp, dtype=self.cfg.dtype
        )
        try:
            actor.set_weights(to_host(params["W1"]), to_host(params["W2"]))
            out = self.folder / f"ep{episode:06d}.{self.format}"
            rec = record(actor, out)
        except VideoError as exc:
            say(f"video skipped at episode {episode}: {exc}; training goes on")
            return None
        finally:
            actor.close()
        say(
            f"video: {rec.path} (episode {episode}, reward {rec.stats.reward:+d}, "
            f"{rec.seconds:.0f} s)"
        )
        return rec
