"""Command line: ``python train.py ...`` and ``python -m pongxp train ...``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import fields

from pongxp import __version__, interrupts
from pongxp.config import (
    PRESETS,
    RESTORED,
    SETTINGS,
    ConfigError,
    TrainConfig,
    flag,
    shown_default,
)

DEFAULTS = TrainConfig()


def _preset_flags(name: str) -> str:
    """A preset as the flags it stands for, e.g. ``--lr 0.001``."""
    return " ".join(f"--{flag(k)} {shown_default(v)}" for k, v in PRESETS[name].items())


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Every setting's flag, made from its declaration on TrainConfig (``config.setting``),
    and the flags that are not settings (--preset, --quiet)."""
    groups = {
        name: parser.add_argument_group(name)
        for name in ("algorithm", "environment", "device", "run")
    }
    groups["algorithm"].add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="named hyperparameters; flags given too win. karpathy: the defaults below "
        f"(pg-pong.py's). fast: {_preset_flags('fast')}, the same algorithm, learns in "
        f"fewer episodes. many-cores: {_preset_flags('many-cores')}, for more than 10 cores. "
        f"steps: {_preset_flags('steps')}, batches of steps (README: Training to win)",
    )
    for f in SETTINGS:
        meta = f.metadata
        group = groups[meta["group"]]
        names = ["--" + flag(f.name), *meta["aliases"]]
        shown = "" if f.default is None or "(default" in meta["help"] else (
            f" (default {shown_default(f.default)})"
        )  # fmt: skip
        if meta["kind"] is bool:  # a switch, and its --no- form for a resume
            group.add_argument(
                *names, dest=f.name, action="store_const", const=True, default=None,
                help=meta["help"] + " (default: off)",
            )  # fmt: skip
            group.add_argument(
                "--no-" + flag(f.name), dest=f.name, action="store_const", const=False,
                help=f"on a resume, stop what --{flag(f.name)} does",
            )  # fmt: skip
            continue
        kind = _num_envs if f.name == "num_envs" else meta["kind"]
        group.add_argument(
            *names, dest=f.name, type=kind, choices=meta["choices"], default=None,
            metavar=meta["metavar"] or flag(f.name).upper().replace("-", "_"),
            help=meta["help"] + shown,
        )  # fmt: skip
    groups["run"].add_argument("--quiet", action="store_true", help="no per-episode output")


def _num_envs(text: str) -> int | str:
    """``auto`` or an integer; anything else is left for ``validate`` to name."""
    try:
        return int(text)
    except ValueError:
        return text


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Fill unset flags from the checkpoint (on --resume) or the defaults, then validate.

    Raises:
        ConfigError, CheckpointError: one-line messages.
    """
    from pongxp import checkpoint

    base = DEFAULTS
    if args.resume is not None:
        base = checkpoint.load(args.resume, use_older="--resume {}").config
    values = {}
    preset = PRESETS[args.preset] if getattr(args, "preset", None) else {}
    for f in fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is None:
            given = preset.get(f.name)
        if f.name in RESTORED:
            values[f.name] = given if given is not None else getattr(base, f.name)
        elif given is not None:
            values[f.name] = given
    # (Here, not in validate: a checkpoint's settings hold lr_end_at's default either way.)
    if getattr(args, "lr_end_at", None) is not None and values["lr_end"] is None:
        raise ConfigError(
            "--lr-end-at says where the --lr-end schedule ends, and this run has no "
            "--lr-end: add --lr-end LR, or drop --lr-end-at"
        )
    return TrainConfig(**values).validate()


#: Flags of pongxp before run folders, and what replaced them.
REMOVED = {
    "--checkpoint": "a run writes its checkpoint into its folder: name it with --run runs/NAME",
    "--metrics": "a run writes its log into its folder: name it with --run runs/NAME",
    "--overwrite": "a new run gets a folder of its own (--run runs/NAME names it), so nothing "
    "is ever replaced",
}


def train_main(argv: Sequence[str] | None = None, prog: str = "train.py") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train the pongxp policy-gradient agent on Pong from pixels.",
        allow_abbrev=False,  # --checkpoint must not pass for --checkpoint-every
    )
    add_train_arguments(parser)
    given = sys.argv[1:] if argv is None else list(argv)
    for word in given:
        if word.split("=")[0] in REMOVED:
            name = word.split("=")[0]
            parser.error(f"{name} is gone: {REMOVED[name]} (docs/runs.md)")
    args = parser.parse_args(given)
    command = f"{_interpreter()} {prog}" if prog.endswith(".py") else prog
    return interrupts.command(
        lambda: run_guarded(lambda: _train(args, command)), interrupts.BEFORE_TRAINING
    )


def _interpreter() -> str:
    """How to name this Python in a command to copy: ``.venv/bin/python`` for a
    virtual environment below the working directory, else plain ``python``."""
    here = os.path.relpath(sys.executable)
    return "python" if here.startswith("..") or os.path.isabs(here) else here


def _train(args: argparse.Namespace, command: str) -> int:
    from pongxp.trainer import train

    cfg = config_from_args(args)
    train(cfg, quiet=args.quiet, command=command, name=f"{args.preset or 'pong'}-seed{cfg.seed}")
    return 0


def run_guarded(job) -> int:  # type: ignore[no-untyped-def]
    """Run ``job``; known failures become one line on stderr and an exit code.

    Exit codes: 0 done, 2 bad input (flags, files, device), 3 training failed.
    An interrupt goes on to ``interrupts.command``: 130 for Ctrl-C, 143 for
    SIGTERM, 129 for SIGHUP (128 + signal, as shells report; training has
    saved by then).
    """
    from pongxp.backend import DeviceError
    from pongxp.checkpoint import CheckpointError
    from pongxp.config import ConfigError
    from pongxp.extras import MissingExtraError
    from pongxp.plot import PlotError
    from pongxp.rollout import EnvError
    from pongxp.trainer import TrainingError
    from pongxp.video import VideoError

    bad_input = (ConfigError, CheckpointError, DeviceError, EnvError)
    try:
        return job()
    except (*bad_input, MissingExtraError, PlotError, VideoError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3


def evaluate_main(argv: Sequence[str] | None = None, prog: str = "pongxp evaluate") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Play games with a checkpoint's policy and report the score "
        "(mean, std, min, max) and the win rate against the built-in opponent. "
        "Runs on the CPU; checkpoints from any device work.",
    )
    parser.add_argument("checkpoint", help="a run folder, or a .npz checkpoint or agent file")
    parser.add_argument("--episodes", type=int, default=10, help="games to play (default 10)")
    parser.add_argument(
        "--greedy",
        action="store_true",
        help="take the more likely action (default: sample, as in training)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for the emulator and the sampler (default 0)"
    )
    parser.add_argument("--env-id", default=None, help="env to play (default: the checkpoint's)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (the only output on stdout; per-game lines go to stderr)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-game lines")
    args = parser.parse_args(argv)
    return run_guarded(lambda: _evaluate(args))


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from pongxp.evaluate import EpisodeResult, evaluate, format_summary

    # With --json, stdout holds the JSON document alone (so it parses); the
    # per-game lines then go to stderr, as progress.
    lines = sys.stderr if args.json else sys.stdout

    def report(index: int, episode: EpisodeResult, _stats: object) -> None:
        if not args.quiet:
            print(
                f"episode {index:>4} | {episode.points_for:>2}-{episode.points_against:<2} | "
                f"score {episode.score:+3d} | {episode.steps:>5} steps",
                file=lines,
                flush=True,
            )

    result = evaluate(
        args.checkpoint, args.episodes, args.greedy, args.seed, args.env_id, on_episode=report
    )
    print(json.dumps(result.to_json()) if args.json else format_summary(result))
    return 0


def plot_main(argv: Sequence[str] | None = None, prog: str = "pongxp plot") -> int:
    from pongxp.plot import DEFAULT_X, MAX_SIDE, MIN_SIZE, X_AXES

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Plot learning curves (episode and running reward against episodes "
        "and against training wall time, or as --x says) of one or more runs into an "
        "image. Needs the plot extra.",
    )
    parser.add_argument(
        "metrics", nargs="+", help="run folders or metrics .jsonl files, one run each"
    )
    parser.add_argument(
        "-o",
        "--output",
        default="runs/curve.png",
        help="image to write; its suffix picks the format: .png, .svg, .pdf, .jpg, ... "
        "(default runs/curve.png)",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=None,
        help="legend name of a run; once per run, in order (default: the folder or file names)",
    )
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument(
        "--x",
        nargs="+",
        default=list(DEFAULT_X),
        metavar="AXIS",
        help=f"x axis of each panel: {', '.join(X_AXES)} (emulator steps); "
        f"default {' '.join(DEFAULT_X)}",
    )
    parser.add_argument(
        "--size",
        default="1200x450",
        help=f"image size WIDTHxHEIGHT in pixels, from {MIN_SIZE[0]}x{MIN_SIZE[1]} to "
        f"{MAX_SIDE}x{MAX_SIDE} (default 1200x450)",
    )
    args = parser.parse_args(argv)
    return run_guarded(lambda: _plot(args))


def _plot(args: argparse.Namespace) -> int:
    from pongxp.config import ConfigError
    from pongxp.plot import plot_files

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must look like 1200x450, got {args.size!r}") from None
    out = plot_files(
        args.metrics,
        args.output,
        args.label,
        width=width,
        height=height,
        title=args.title,
        x=args.x,
    )
    print(f"wrote {out} ({width}x{height}, {len(args.metrics)} run(s))")
    return 0


def video_main(argv: Sequence[str] | None = None, prog: str = "pongxp video") -> int:
    from pongxp.video import MAX_SCALE, MAX_SPEED

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Record one game played by a checkpoint's policy at the game's speed: "
        "MP4 at 60 fps, or GIF at 20 fps (also the fallback when no ffmpeg is installed). "
        "Needs the video extra.",
    )
    parser.add_argument("checkpoint", help="a run folder, or a .npz checkpoint or agent file")
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="a .mp4 or .gif file (default: runs/<run or checkpoint name>.mp4)",
    )
    parser.add_argument(
        "--show-input",
        action="store_true",
        help="show the network's input (the 80x80 difference frame) beside the screen",
    )
    parser.add_argument(
        "--greedy", action="store_true", help="take the more likely action (default: sample)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the game (default 0)")
    parser.add_argument(
        "--scale",
        type=int,
        default=None,
        help=f"integer upscale, 1 to {MAX_SCALE} (default 2 for MP4, 1 for GIF)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="cut the video after this many seconds, > 0 (default: the whole game)",
    )
    parser.add_argument(
        "--speed",
        type=int,
        default=1,
        help=f"play the game K times faster, 1 to {MAX_SPEED}: every K-th frame, e.g. a whole "
        "game in a short GIF (default 1: the game's own speed)",
    )
    parser.add_argument("--env-id", default=None, help="env to play (default: the checkpoint's)")
    args = parser.parse_args(argv)
    return run_guarded(lambda: _video(args))


def _video(args: argparse.Namespace) -> int:
    from pongxp.video import record_checkpoint

    rec = record_checkpoint(
        args.checkpoint,
        args.output,
        seed=args.seed,
        env_id=args.env_id,
        greedy=args.greedy,
        show_input=args.show_input,
        scale=args.scale,
        max_seconds=args.max_seconds,
        speed=args.speed,
        say=lambda text: print(text, file=sys.stderr),
    )
    print(
        f"wrote {rec.path}: {rec.frames} frames at {rec.fps} fps ({rec.seconds:.1f} s), "
        f"episode reward {rec.stats.reward:+d} in {rec.stats.steps} steps"
    )
    return 0


def export_main(argv: Sequence[str] | None = None, prog: str = "pongxp export") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write a training checkpoint's policy alone to an agent file: float32 "
        "W1 (H, 6400) and W2 (H,), the settings, and a note on how to play them (about "
        "5 MB at H = 200). evaluate and video take it like a checkpoint, and any program "
        "that reads W1 and W2 from the .npz can play with it; it cannot be resumed.",
    )
    parser.add_argument("checkpoint", help="a run folder or a .npz checkpoint")
    parser.add_argument("output", help="the agent file to write, ending in .npz")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    return run_guarded(lambda: _export(args))


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pongxp import checkpoint
    from pongxp.config import CHECKPOINT_SUFFIX, ConfigError, check_suffix
    from pongxp.run_folder import checkpoint_of

    out = Path(args.output)
    check_suffix(out, CHECKPOINT_SUFFIX, "the agent file")
    source = checkpoint_of(args.checkpoint)[0]
    if out.exists() and source.exists() and os.path.samefile(out, source):
        raise ConfigError(
            f"{out} is {source} itself; writing the agent file there would destroy it: "
            "choose another output"
        )
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} already exists; add --overwrite to replace it")
    checkpoint.check_writable(out, "agent file")
    ckpt = checkpoint.load(args.checkpoint)
    checkpoint.save_agent(out, ckpt)
    w1 = ckpt.params["W1"]
    print(
        f"wrote {out}: W1 {w1.shape[0]}x{w1.shape[1]} and W2 float32, "
        f"{out.stat().st_size / 1e6:.1f} MB, trained {ckpt.episode} episodes"
    )
    return 0


def weights_main(argv: Sequence[str] | None = None, prog: str = "pongxp weights") -> int:
    from pongxp.weights_picture import COLUMNS, MAX_SCALE

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Draw what the network learned: each row of W1 (one hidden unit's "
        "weights on the 6400 input pixels) as an 80x80 image, white for positive, black "
        "for negative, grey for 0, each tile scaled to its own largest weight. Needs the "
        "plot extra.",
    )
    parser.add_argument("checkpoint", help="a run folder, or a .npz checkpoint or agent file")
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="the .png to write (default: runs/<run or checkpoint name>-weights.png)",
    )
    parser.add_argument(
        "--units", type=int, default=None, help="draw the first N hidden units (default: all)"
    )
    parser.add_argument(
        "--columns", type=int, default=COLUMNS, help=f"tiles per row (default {COLUMNS})"
    )
    parser.add_argument(
        "--scale", type=int, default=1, help=f"integer upscale, 1 to {MAX_SCALE} (default 1)"
    )
    args = parser.parse_args(argv)
    return run_guarded(lambda: _weights(args))


def _weights(args: argparse.Namespace) -> int:
    from pongxp.weights_picture import write_picture

    pic = write_picture(args.checkpoint, args.output, args.units, args.columns, args.scale)
    print(
        f"wrote {pic.path}: {pic.units} hidden units as 80x80 tiles, "
        f"{pic.width}x{pic.height} pixels, trained {pic.trained_episodes} episodes"
    )
    return 0


def tensorboard_main(argv: Sequence[str] | None = None, prog: str = "pongxp tensorboard") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write finished runs' metrics logs as TensorBoard event files, with the "
        "curves train.py --tensorboard writes per episode (global step: emulator steps): "
        "RUN... into each run folder's tb/, or LOG... DIR into DIR/<name> each. View with "
        "`tensorboard --logdir runs` (or DIR). Needs the tensorboard extra.",
    )
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="RUN|LOG",
        help="run folders; or metrics .jsonl files (or run folders) and then DIR",
    )
    args = parser.parse_args(argv)
    return run_guarded(lambda: _tensorboard(args))


def _tensorboard(args: argparse.Namespace) -> int:
    from pongxp.run_folder import run_of
    from pongxp.tensorboard_log import convert_logs

    sources, directory = args.sources, None
    if len(sources) > 1 and run_of(sources[-1]) is None:
        sources, directory = sources[:-1], sources[-1]
    for run in convert_logs(sources, directory):
        print(f"wrote {run.directory}: {run.episodes} episodes, {run.last_step:,} emulator steps")
    print(f"view with: tensorboard --logdir {directory or 'runs'}")
    return 0


COMMANDS = {
    "train": ("train the agent", train_main),
    "evaluate": ("play games from a checkpoint: score and win rate", evaluate_main),
    "plot": ("learning curves from metrics logs to an image (plot extra)", plot_main),
    "video": ("MP4/GIF of the agent playing (video extra)", video_main),
    "export": ("a checkpoint's weights alone, as a small agent file", export_main),
    "weights": ("W1's rows as 80x80 images: what the network learned (plot extra)", weights_main),
    "tensorboard": (
        "metrics logs to TensorBoard event files (tensorboard extra)",
        tensorboard_main,
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pongxp COMMAND`` (also the ``pongxp`` console script)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The console script is "pongxp"; python -m runs this module as __main__.py.
    program = "pongxp" if os.path.basename(sys.argv[0]) == "pongxp" else "python -m pongxp"
    if argv and argv[0] == "--version":
        print(f"pongxp {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        out = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        if argv and argv[0] not in ("-h", "--help"):
            known = ", ".join(COMMANDS)
            print(f"error: unknown command {argv[0]!r}; use one of: {known}", file=out)
        print(f"usage: {program} {{" + ",".join(COMMANDS) + "} [options]", file=out)
        for name, (summary, _) in COMMANDS.items():
            print(f"  {name:<12} {summary}", file=out)
        print(f"each command has --help, e.g. {program} evaluate --help; --version", file=out)
        return 0 if out is sys.stdout else 2
    job = COMMANDS[argv[0]][1]
    return interrupts.command(lambda: job(argv[1:], prog=f"{program} {argv[0]}"))
