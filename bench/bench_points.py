"""How long are Pong's points, by the agent's skill?

    python bench/bench_points.py --agent untrained --agent pretrained=pretrained/pong-v0.npz

Results: ``bench/results/points.md`` and ``.json`` (``bench_scaling.py``'s input).

A batch of steps (``--batch-steps``) ends each slot's share at the first point
boundary after its quota (``pongxp/slot_share.py``), so what the batch waits
for is the rest of the point under way, and points grow as the agent learns
to return the ball. ``bench_scaling.py`` models those batches from real points:
this script records them. For each agent given (an untrained one, training
checkpoints, agent files), one ``pongxp.rollout.Actor`` (the training's actor,
sampled actions) plays ``--games`` games from its own seed, and each game's
score, steps and the steps of each of its points are kept: a point runs from
the step after one non-zero reward to the next non-zero reward, and a game
ends on its last point's reward (checked: no steps after it).

Written: ``results/NAME.json`` (per game: reward, steps, and its points' steps
in order, space-separated; small enough to commit as ``bench_scaling.py``'s
input) and ``results/NAME.md``.

    python bench/bench_points.py --agent untrained --agent early=early.npz \\
        --how 'early=python train.py --preset many-cores --seed 0 --episodes 600' \\
        --agent pretrained=pretrained/pong-v0.npz
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import machine
import numpy as np

from pongxp.config import INPUT_SIZE, ConfigError, TrainConfig, check_number

UNTRAINED = "untrained"


def point_lengths(rewards: np.ndarray) -> np.ndarray:
    """Steps of each point of one whole game, (P,) int64, from its (T,) per-step
    rewards: a point ends at its non-zero reward.

    Raises:
        ValueError: the game does not end on a point's reward (a truncated game).
    """
    ends = np.flatnonzero(rewards)
    if ends.size == 0 or ends[-1] != len(rewards) - 1:
        raise ValueError("the game does not end on a point; was it truncated?")
    return np.diff(ends, prepend=-1).astype(np.int64)


def game_points(game: dict[str, Any]) -> np.ndarray:
    """A recorded game's point lengths, (P,) float64 (stored as a string of them)."""
    return np.array(game["points"].split(), dtype=np.float64)


def play_games(name: str, path: str | None, games: int, seed: int) -> dict[str, Any]:
    """``games`` whole games of one agent: untrained (``path`` None, the trainer's
    initial weights for ``--seed 0``) or a checkpoint or agent file."""
    import array_api_compat.numpy as xp

    from pongxp.evaluate import load_actor
    from pongxp.policy import init_params
    from pongxp.rollout import Actor

    cfg = TrainConfig()
    if path is None:
        params = init_params(np.random.default_rng(0), cfg.hidden, INPUT_SIZE)
        actor = Actor(cfg.env_id, seed, xp, cfg.dtype)
        actor.set_weights(params["W1"].astype(cfg.dtype), params["W2"].astype(cfg.dtype))
        agent: dict[str, Any] = {"name": name, "weights": "random init (seed 0), untrained"}
    else:
        actor, ckpt = load_actor(path, seed)
        agent = {
            "name": name,
            "weights": path,
            "trained_episodes": ckpt.episode,
            "running_reward": round(float(ckpt.running_reward), 2),
        }
    rows = []
    start = time.perf_counter()
    try:
        for _ in range(games):
            batch, stats = actor.play()
            points = point_lengths(batch.rewards)
            # One line per game in the indented JSON: the points as a string.
            points_text = " ".join(map(str, points.tolist()))
            rows.append({"reward": stats.reward, "steps": stats.steps, "points": points_text})
    finally:
        actor.close()
    agent["seconds"] = round(time.perf_counter() - start, 1)
    agent["games"] = rows
    return agent


def summary(agent: dict[str, Any]) -> dict[str, float]:
    """Means over an agent's games, and the spread of its points: length in steps
    and relative to its game's mean point (what ``bench_scaling`` draws from)."""
    games = agent["games"]
    points = [game_points(g) for g in games]
    lengths = np.concatenate(points)
    relative = np.concatenate([p / p.mean() for p in points])
    p10, p50, p90, p99 = np.percentile(lengths, [10, 50, 90, 99])
    return {
        "reward": statistics.fmean(g["reward"] for g in games),
        "steps": statistics.fmean(g["steps"] for g in games),
        "points_per_game": statistics.fmean(len(p) for p in points),
        "point_mean": float(lengths.mean()),
        "point_p10": float(p10),
        "point_p50": float(p50),
        "point_p90": float(p90),
        "point_p99": float(p99),
        "point_max": float(lengths.max()),
        "relative_cv": float(relative.std() / relative.mean()),
    }


def markdown(record: dict[str, Any]) -> str:
    m = record["machine"]
    lines = [
        machine.markdown_header(m, "Point lengths of real games, by the agent's skill"),
        f"Each agent: {record['settings']['games']} games of `{TrainConfig().env_id}`, sampled "
        f"actions, actor seed {record['settings']['seed']} (`pongxp.rollout.Actor`). A point: "
        "the steps from one non-zero reward to the next. All figures **measured** (counted in "
        "the games played); no timing here.",
        "",
        "| agent | weights | how made | mean score | steps/game | points/game | mean point "
        "| p10 | median | p90 | p99 | max | CV of point/game mean |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for agent in record["agents"]:
        s = agent["summary"]
        trained = (
            f" ({agent['trained_episodes']:,} episodes, running reward "
            f"{agent['running_reward']:+.2f})"
            if "trained_episodes" in agent
            else ""
        )
        lines.append(
            f"| {agent['name']} | `{agent['weights']}`{trained} | {agent.get('how', '')} | "
            f"{s['reward']:+.1f} | {s['steps']:,.0f} | {s['points_per_game']:.1f} | "
            f"{s['point_mean']:.0f} | {s['point_p10']:.0f} | {s['point_p50']:.0f} | "
            f"{s['point_p90']:.0f} | {s['point_p99']:.0f} | {s['point_max']:.0f} | "
            f"{s['relative_cv']:.2f} |"
        )
    lines += [
        "",
        "Points per game = 42 - |score| (21 for the winner, the loser's for the rest). "
        "`bench_scaling.py` scales these shapes to each logged episode's own mean point "
        "(its steps over 42 - |reward|), taking the agent whose mean point is nearest.",
        "",
    ]
    return "\n".join(lines)


def parse_agents(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple]:
    """(name, path or None, how made) per ``--agent`` (``untrained``, ``NAME=PATH`` or
    ``PATH``), refused in one line before any game is played."""
    how = dict(item.split("=", 1) for item in args.how if "=" in item)
    agents = []
    for item in args.agent:
        if item == UNTRAINED:
            agents.append((UNTRAINED, None, how.get(UNTRAINED, "")))
            continue
        name, _, path = item.rpartition("=")
        name = name or Path(path).stem
        if not Path(path).is_file():
            parser.error(f"--agent {item}: {path} is not a file")
        agents.append((name, path, how.get(name, "")))
    return agents


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--agent",
        action="append",
        required=True,
        help=f"'{UNTRAINED}', NAME=PATH or PATH (a checkpoint or agent file); repeat",
    )
    parser.add_argument("--how", action="append", default=[], help="NAME=how its file was made")
    parser.add_argument("--games", type=int, default=30, help="games per agent")
    parser.add_argument("--seed", type=int, default=2024, help="of each agent's actor")
    parser.add_argument("--out", type=Path, default=machine.RESULTS)
    parser.add_argument("--name", default="points", help="results file stem")
    args = parser.parse_args(argv)
    try:
        check_number("--games", args.games, 1)
    except ConfigError as exc:
        parser.error(str(exc))
    agents = parse_agents(parser, args)
    settings = {"games": args.games, "seed": args.seed}
    record, started = machine.start_record("Point lengths", settings)
    record["agents"] = []
    for name, path, how in agents:
        agent = play_games(name, path, args.games, args.seed)
        agent["how"] = how
        agent["summary"] = summary(agent)
        s = agent["summary"]
        print(
            f"{name}: mean score {s['reward']:+.1f}, {s['steps']:,.0f} steps a game, mean point "
            f"{s['point_mean']:.0f} steps ({agent['seconds']} s)",
            flush=True,
        )
        record["agents"].append(agent)
    record["verdicts"] = [
        f"{a['name']}: mean point {a['summary']['point_mean']:.0f} steps, "
        f"p90 {a['summary']['point_p90']:.0f}, max {a['summary']['point_max']:.0f}"
        for a in record["agents"]
    ]
    machine.finish_record(record, started)
    machine.write_results(record, markdown(record), args.out, args.name)


if __name__ == "__main__":
    main()
