"""Command line: ``python train.py ...`` and ``python -m pongxp train ...``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import fields

from pongxp import __version__, interrupts
from pongxp.config import (
    ACTORS,
    DEFAULT_CHECKPOINT,
    DEFAULT_METRICS,
    DEVICES,
    DTYPES,
    PRESETS,
    STANDARDIZE,
    ConfigError,
    TrainConfig,
)

DEFAULTS = TrainConfig()
_FLAG = {"learning_rate": "lr"}  # setting -> flag, where they differ

# Algorithm settings a resume takes from the checkpoint unless given again.
FROM_CHECKPOINT = (
    "hidden",
    "batch_size",
    "batch_steps",
    "batch_steps_from",
    "learning_rate",
    "lr_end",
    "lr_end_at",
    "entropy_bonus",
    "standardize",
    "gamma",
    "decay_rate",
    "seed",
    "env_id",
    "dtype",
    "checkpoint_every",
    "keep",
    "video_every",
    "tensorboard",
)


def _preset_flags(name: str) -> str:
    """A preset as the flags it stands for, e.g. ``--lr 0.001``."""
    return " ".join(
        f"--{_FLAG.get(k, k).replace('_', '-')} {v:g}"
        if isinstance(v, (int, float))
        else f"--{_FLAG.get(k, k).replace('_', '-')} {v}"
        for k, v in PRESETS[name].items()
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    alg = parser.add_argument_group("algorithm")
    alg.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="named hyperparameters; flags given too win. karpathy: the defaults below "
        f"(pg-pong.py's). fast: {_preset_flags('fast')}, same algorithm, wins in far fewer "
        f"episodes (README: Training to win). many-cores: {_preset_flags('many-cores')}, "
        "for more than 10 cores (README: How long on your machine). steps: "
        f"{_preset_flags('steps')}, batches of steps, the fewest steps to a win "
        "(README: Batches of steps)",
    )
    alg.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="total episodes to reach, counting those before a resume; the run ends at "
        "exactly that many: no batch ends more than it still needs (with --batch-steps, "
        "each slot of the last batches stops at the end of its share of those, split over "
        f"the slots) (default {d.episodes})",
    )
    alg.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"episodes per RMSProp update; with --batch-steps, the slots that share a "
        f"batch's steps, one emulator each (default {d.batch_size})",
    )
    alg.add_argument(
        "--batch-steps",
        type=int,
        default=None,
        metavar="S",
        help="make a batch S emulator steps of whole points instead of --batch-size whole "
        "episodes: each slot plays at least S / batch-size steps, stops at the end of a "
        "point and carries its game into the next batch, so updates come at a steady rate "
        "however long the games get. S is the learning setting; --batch-size only sets how "
        "many actors can be busy, so give it the number of cores or a multiple of it, 10 or "
        "more (34000 on 20 and on 64 slots learned alike; default 0: whole episodes)",
    )
    alg.add_argument(
        "--batch-steps-from",
        type=float,
        default=None,
        metavar="R",
        help="with --batch-steps: batches of --batch-size whole episodes while the running "
        "reward is below R, batches of steps while it is at R or above (default: steps "
        "throughout)",
    )
    alg.add_argument(
        "--lr",
        "--learning-rate",
        dest="learning_rate",
        type=float,
        default=None,
        help=f"RMSProp learning rate (default {d.learning_rate:g})",
    )
    alg.add_argument(
        "--lr-end",
        type=float,
        default=None,
        metavar="LR",
        help="a learning-rate schedule: the rate goes linearly from --lr at a running "
        "reward of -21 to LR at --lr-end-at, and stays LR above it (default: none)",
    )
    alg.add_argument(
        "--lr-end-at",
        type=float,
        default=None,
        metavar="R",
        help=f"the running reward at which --lr-end is reached, in (-21, 21]; only with "
        f"--lr-end, given or resumed (default {d.lr_end_at:g})",
    )
    alg.add_argument(
        "--standardize",
        choices=STANDARDIZE,
        default=None,
        help="standardise the returns by each episode's mean and spread (Karpathy's; with "
        "--batch-steps, each piece of an episode a slot played in the batch) or by the "
        f"whole batch's (default {d.standardize})",
    )
    alg.add_argument(
        "--entropy-bonus",
        type=float,
        default=None,
        metavar="BETA",
        help="an addition to REINFORCE: also climb BETA x the policy's entropy, which "
        f"keeps it from turning deterministic too soon (default {d.entropy_bonus:g}: none)",
    )
    alg.add_argument(
        "--gamma",
        type=float,
        default=None,
        help=f"reward discount factor, in (0, 1] (default {d.gamma})",
    )
    alg.add_argument(
        "--decay-rate",
        type=float,
        default=None,
        help=f"RMSProp decay of the squared-gradient cache, in (0, 1] (default {d.decay_rate})",
    )
    alg.add_argument(
        "--hidden", type=int, default=None, help=f"hidden units H (default {d.hidden})"
    )
    alg.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"seed for weights, emulators and action sampling (default {d.seed})",
    )
    env = parser.add_argument_group("environment")
    env.add_argument(
        "--env-id",
        default=None,
        help=f"Gymnasium Pong id; {d.env_id} is the tutorial's (default {d.env_id})",
    )
    env.add_argument(
        "--num-envs",
        type=_num_envs,
        default=None,
        help="rollout actors, one emulator process each; auto = the cores this process may "
        "use (os.sched_getaffinity), at most --batch-size. The episodes played do not "
        f"depend on it, only the speed (default {d.num_envs})",
    )
    env.add_argument(
        "--actors",
        choices=ACTORS,
        default=None,
        help="where the rollout actors run: processes on this machine, or ray actors "
        "(needs pongxp[ray]) on a local Ray instance or the cluster at --ray-address; "
        f"the episodes are the same (default {d.actors})",
    )
    env.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        default=None,
        help="join the Ray cluster whose head is at ADDRESS (HOST:PORT, as `ray start "
        "--head` prints it; or auto), with --actors ray; --num-envs auto then starts "
        "one actor per cluster CPU. Default: $RAY_ADDRESS if set, else a local Ray "
        "instance for this run",
    )
    dev = parser.add_argument_group("device")
    dev.add_argument(
        "--device",
        choices=DEVICES,
        default=d.device,
        help="where the update math runs: cpu, gpu (CuPy) or auto = gpu if usable "
        f"(default {d.device}); rollouts always run on the CPU",
    )
    dev.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help=f"float type of the math (default {d.dtype}: half the memory and about "
        "twice the update speed of float64; gradients agree to ~1e-4)",
    )
    run = parser.add_argument_group("checkpoints and logs")
    run.add_argument(
        "--checkpoint",
        default=None,
        help=f"checkpoint file to write, ending in .npz (default {DEFAULT_CHECKPOINT}; "
        "on --resume, the resumed run's own)",
    )
    run.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help=f"save after this many episodes (default {d.checkpoint_every}); "
        "also at the end and on Ctrl-C/SIGTERM",
    )
    run.add_argument(
        "--keep",
        type=int,
        default=None,
        help=f"checkpoints to keep, the newest as --checkpoint and all as "
        f"<name>.ep<N>.npz when > 1; lowering it deletes the older copies (default {d.keep})",
    )
    run.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        default=None,
        help="continue the run saved in CHECKPOINT exactly: its settings, episode target, "
        "checkpoint and log are used unless given again (a --keep copy continues the "
        "checkpoint it was kept from)",
    )
    run.add_argument(
        "--metrics",
        default=None,
        help=f"per-episode JSONL log (default {DEFAULT_METRICS}; on --resume, the log the "
        "resumed run wrote)",
    )
    run.add_argument(
        "--video-every",
        type=int,
        default=None,
        metavar="K",
        help="record a video of one extra episode (own emulator, same weights) each K "
        "episodes into <checkpoint>-videos/; needs the video extra (default 0: off)",
    )
    run.add_argument(
        "--tensorboard",
        metavar="DIR",
        default=None,
        help="also write TensorBoard event files into DIR as the run trains (global step: "
        "emulator steps); view with `tensorboard --logdir DIR`; a resume keeps writing "
        "there; needs the tensorboard extra (default: off)",
    )
    run.add_argument(
        "--no-tensorboard",
        dest="tensorboard",
        action="store_const",
        const="",
        help="on a resume, stop writing the checkpoint's TensorBoard event files",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run even if --checkpoint or --metrics exist (they are replaced); "
        "without it such a run stops with a hint to --resume. With --resume: let the run "
        "replace another run's --checkpoint or --metrics, or start a new log where its "
        "own is missing or does not match the checkpoint",
    )
    run.add_argument("--quiet", action="store_true", help="no per-episode output")


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
        if f.name in FROM_CHECKPOINT or f.name == "episodes":
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


def train_main(argv: Sequence[str] | None = None, prog: str = "train.py") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train the pongxp policy-gradient agent on Pong from pixels.",
    )
    add_train_arguments(parser)
    args = parser.parse_args(argv)
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

    train(config_from_args(args), quiet=args.quiet, command=command)
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
    parser.add_argument("checkpoint", help="a .npz checkpoint written by training")
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
    parser.add_argument("metrics", nargs="+", help="metrics .jsonl files, one run each")
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
        help="legend name of a run; once per file, in order (default: the file names)",
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
    parser.add_argument("checkpoint", help="a .npz checkpoint written by training")
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="a .mp4 or .gif file (default: runs/<checkpoint name>.mp4)",
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
    parser.add_argument("checkpoint", help="a .npz checkpoint written by training")
    parser.add_argument("output", help="the agent file to write, ending in .npz")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    return run_guarded(lambda: _export(args))


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pongxp import checkpoint
    from pongxp.config import CHECKPOINT_SUFFIX, ConfigError, check_suffix
    from pongxp.resume import check_not_same

    out = Path(args.output)
    check_suffix(out, CHECKPOINT_SUFFIX, "the agent file")
    check_not_same(args.output, args.checkpoint, "agent file")
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
    parser.add_argument("checkpoint", help="an agent file or training checkpoint (.npz)")
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="the .png to write (default: runs/<checkpoint name>-weights.png)",
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
        description="Write finished runs' metrics logs as TensorBoard event files, each "
        "into DIR/<log name>, with the curves train.py --tensorboard writes per episode "
        "(global step: emulator steps). View with `tensorboard --logdir DIR`. "
        "Needs the tensorboard extra.",
    )
    parser.add_argument("logs", nargs="+", metavar="LOG", help="metrics .jsonl files")
    parser.add_argument("directory", metavar="DIR", help="TensorBoard log directory")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace event files already in DIR/<log name>"
    )
    args = parser.parse_args(argv)
    return run_guarded(lambda: _tensorboard(args))


def _tensorboard(args: argparse.Namespace) -> int:
    from pongxp.tensorboard_log import convert_logs

    for run in convert_logs(args.logs, args.directory, args.overwrite):
        print(f"wrote {run.directory}: {run.episodes} episodes, {run.last_step:,} emulator steps")
    print(f"view with: tensorboard --logdir {args.directory}")
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
