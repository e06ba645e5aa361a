"""Rollouts on a Ray cluster of several nodes (GitHub issue 16), simulated on this machine.

One ``ray.cluster_utils.Cluster`` serves the module: a head node with no CPUs
(the runs' drivers attach to it, so no actor runs there) and worker nodes of
one CPU each, so each node holds one rollout actor. Worker nodes are added as
a test needs them and removed by the tests, the way nodes crash or leave a
real cluster. Each run is compared with the same seed on ``--actors processes``
(``conftest.processes_run``): the episodes and weights must be the same, bit
for bit.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    NOTE,
    RAY_START_S,
    assert_same_run,
    episode_line,
    error_line,
    finish,
    finished_with_notes,
    logged,
    patient_ray,
    start,
    train_argv,
    wait_for,
)
from conftest import RAY_EPISODES as EPISODES
from conftest import RAY_SMALL as SMALL

from pongxp import checkpoint

#: Ray's default notices a crashed node after ~30 s of missed health checks;
#: these settings make it ~2 s, so the node-loss tests stay short.
FAST_HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}
#: The end of the pool's note when it goes on with fewer actors (then their number).
DROPPED = "so the run goes on with"
#: A line of Ray's own (C++) log: "[2026-11-30 15:26:03,618 E 24300 24320] core_worker.cc:609: ".
RAY_LOG = re.compile(r"\[\d{4}-\d\d-\d\d [\d:,]+ [DIWEF] \d+ \d+\] \S+\.cc:\d+: ")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head node without CPUs; the tests add worker nodes (``grow``)."""
    pytest.importorskip("ray")
    import ray._common.utils
    from ray.cluster_utils import Cluster

    sigterm = signal.getsignal(signal.SIGTERM)
    with patient_ray("the simulated cluster's head node"):
        made = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "include_dashboard": False,
                "_system_config": FAST_HEALTH_CHECKS,
            },
        )
    signal.signal(signal.SIGTERM, sigterm)  # the nodes' own would exit pytest
    # The head records its address for `ray.init()` without one, which would
    # then join this cluster instead of starting its own (another test session).
    ray._common.utils.reset_ray_address()
    try:
        yield made
    finally:
        made.shutdown()


def grow(cluster: Any, nodes: int) -> list[Any]:
    """Add 1-CPU worker nodes until the cluster has ``nodes``; return them."""
    sigterm = signal.getsignal(signal.SIGTERM)
    with patient_ray(f"{nodes} worker nodes"):
        while len(cluster.worker_nodes) < nodes:
            cluster.add_node(num_cpus=1, wait=False)  # they start side by side
        signal.signal(signal.SIGTERM, sigterm)
        cluster.wait_for_nodes(timeout=RAY_START_S)
    return list(cluster.worker_nodes)


def actor_nodes(cluster: Any, known: set[str], alive: bool = False) -> dict[str, str]:
    """Name -> node id of the rollout actors not in ``known`` (actor ids); with
    ``alive``, of those that have started and not died."""
    table = cluster.global_state.actor_table(None)
    return {
        info["Name"]: info["Address"]["NodeID"]
        for actor_id, info in table.items()
        if actor_id not in known
        and info["Name"].startswith("pongxp-rollout-")
        and (info["State"] == "ALIVE" or not alive)
    }


def run_argv(cluster: Any, ckpt: Path, *flags: str) -> list[str]:
    return train_argv(ckpt, *SMALL, "--actors", "ray", "--ray-address", cluster.address, *flags)


def test_actors_spread_over_the_nodes_and_play_the_processes_run(
    cluster: Any, processes_run: Path, tmp_path: Path
) -> None:
    """Two worker nodes of one CPU: one actor on each, none on the head."""
    nodes = grow(cluster, 2)
    known = set(cluster.global_state.actor_table(None))
    code, out, err = finish(
        start(run_argv(cluster, tmp_path / "ray" / "checkpoint.npz", "--episodes", str(EPISODES)))
    )
    assert code == 0, err
    assert "2 Ray actors" in out and NOTE not in out, out
    placed = actor_nodes(cluster, known)
    assert sorted(placed) == ["pongxp-rollout-0", "pongxp-rollout-1"], placed
    assert sorted(placed.values()) == sorted(node.node_id for node in nodes)
    assert_same_run(tmp_path, "ray", processes_run)


def test_a_node_lost_mid_batch_loses_no_episode_and_the_run_goes_on(
    cluster: Any, processes_run: Path, tmp_path: Path
) -> None:
    """The node of the actor playing slot 1 of the first batch crashes (its processes
    are killed) while it plays: the other actor plays that slot again, from its
    stream, and the rest of the run; the cluster has no CPU for a replacement."""
    grow(cluster, 2)
    known = set(cluster.global_state.actor_table(None))
    ckpt = tmp_path / "lost" / "checkpoint.npz"
    argv = [a for a in run_argv(cluster, ckpt, "--episodes", str(EPISODES)) if a != "--quiet"]
    proc = start(argv)
    wait_for(lambda: len(actor_nodes(cluster, known, alive=True)) == 2, proc)
    # The pool hands slot j of the first batch to its actor j once both have started.
    doomed = actor_nodes(cluster, known)["pongxp-rollout-1"]
    node = next(n for n in cluster.worker_nodes if n.node_id == doomed)
    cluster.remove_node(node, allow_graceful=False)
    lines, notes = finished_with_notes(proc)
    assert len(notes) == 1 and lines[notes[0]].startswith(f"{NOTE} 1 "), lines
    dropped = [line for line in lines if DROPPED in line]
    assert dropped and dropped[-1].endswith(f"{DROPPED} 1 actor"), lines
    second = episode_line(lines, 2)
    assert notes[0] < second, "the node should be lost while slot 1 of the first batch played"
    assert_same_run(tmp_path, "lost", processes_run)


def test_with_no_node_left_the_run_saves_and_stops_with_one_line(
    cluster: Any, tmp_path: Path
) -> None:
    """Every worker node leaves (shut down) after the first batch: the committed
    batch is saved and the run stops in one line."""
    nodes = grow(cluster, 1)
    ckpt = tmp_path / "run" / "checkpoint.npz"
    proc = start(run_argv(cluster, ckpt, "--episodes", "300", "--checkpoint-every", "1000"))
    wait_for(lambda: logged(ckpt.with_name("metrics.jsonl")) > 3, proc)
    for node in nodes:
        cluster.remove_node(node)
    code, out, err = finish(proc)
    # Ray's core may log (in its own format) that it tried to recover an episode
    # that was on a node when it left; pongxp itself writes the one line.
    ours = [line for line in err.splitlines() if not RAY_LOG.match(line)]
    line = error_line((code, out, "\n".join(ours)))
    assert code == 3, err
    saved = checkpoint.load(ckpt)
    assert saved.episode >= 3 and saved.episode % 3 == 0
    assert line.startswith("error: the Ray cluster has no CPUs left for rollout actors ("), line
    assert line.endswith(
        f"; add nodes to it; saved episode {saved.episode} to {ckpt}; continue with: "
        f"python train.py --resume {ckpt.parent} --device cpu --actors ray --ray-address "
        f"{cluster.address}"
    ), line
