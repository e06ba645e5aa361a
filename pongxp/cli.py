"""Command line: ``python train.py ...`` and ``python -m pongxp train ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields

from pongxp.config import DEVICES, DTYPES, TrainConfig

DEFAULTS = TrainConfig()

# Algorithm settings a resume takes from the checkpoint unless given again.
FROM_CHECKPOINT = (
    "hidden",
    "batch_size",
    "learning_rate",
    "gamma",
    "decay_rate",
    "seed",
    "env_id",
    "num_envs",
    "dtype",
    "checkpoint_every",
    "keep",
)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    alg = parser.add_argument_group("algorithm")
    alg.add_argument(
        "--episodes",
        type=int,
        default=None,
        help=f"total episodes to reach, counting those before a resume (default {d.episodes})",
    )
    alg.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"episodes per RMSProp update (default {d.batch_size})",
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
        type=int,
        default=None,
        help=f"emulators stepping in parallel processes (default {d.num_envs})",
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
        default=d.checkpoint,
        help=f"checkpoint file to write (default {d.checkpoint})",
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
        f"<name>.ep<N>.npz when > 1 (default {d.keep})",
    )
    run.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        default=None,
        help="continue the run saved in CHECKPOINT exactly; its settings are "
        "used unless given again",
    )
    run.add_argument(
        "--metrics", default=d.metrics, help=f"per-episode JSONL log (default {d.metrics})"
    )
    run.add_argument("--quiet", action="store_true", help="no per-episode output")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Fill unset flags from the checkpoint (on --resume) or the defaults, then validate.

    Raises:
        ConfigError, CheckpointError: one-line messages.
    """
    from pongxp import checkpoint

    base = DEFAULTS
    if args.resume is not None:
        base = checkpoint.load(args.resume).config
    values = {}
    for f in fields(TrainConfig):
        given = getattr(args, f.name, None)
        if f.name in FROM_CHECKPOINT or f.name == "episodes":
            values[f.name] = given if given is not None else getattr(base, f.name)
        elif given is not None:
            values[f.name] = given
    if args.resume is not None and args.episodes is None:
        values["episodes"] = DEFAULTS.episodes
    return TrainConfig(**values).validate()


def train_main(argv: Sequence[str] | None = None, prog: str = "train.py") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train the pongxp policy-gradient agent on Pong from pixels.",
    )
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    return run_guarded(lambda: _train(args))


def _train(args: argparse.Namespace) -> int:
    from pongxp.trainer import train

    train(config_from_args(args), quiet=args.quiet)
    return 0


def run_guarded(job) -> int:  # type: ignore[no-untyped-def]
    """Run ``job``; known failures become one line on stderr and an exit code.

    Exit codes: 0 done, 2 bad input (flags, files, device), 3 training failed,
    130 interrupted (after saving).
    """
    from pongxp.backend import DeviceError
    from pongxp.checkpoint import CheckpointError
    from pongxp.config import ConfigError
    from pongxp.rollout import EnvError
    from pongxp.trainer import TrainingError

    try:
        return job()
    except (ConfigError, CheckpointError, DeviceError, EnvError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pongxp COMMAND``: train (more commands are listed by --help)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train_main}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: python -m pongxp {" + ",".join(commands) + "} [options]")
        print("  train     train the agent (python -m pongxp train --help)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return commands[argv[0]](argv[1:], prog=f"python -m pongxp {argv[0]}")
