"""Several actors stepping in parallel, one process each.

Episode j of a batch is played by actor j % N, and results are handed out in
episode order, so a run is reproducible from its seed and ``--num-envs``.
With one env the actor runs in this process; with more, each lives in a
spawned worker process that receives the weights once per batch and sends back
whole episodes (a few hundred KB each). The parent reads every worker as soon
as it has an episode ready and buffers episodes that arrive early, so a worker
never waits for another one's longer episode.

Why processes and not ale-py's ``AtariVectorEnv``: the vector env only has a
fixed frameskip, so it cannot run the default ``Pong-v0`` (frameskip drawn
from 2..4) at all, nor save and restore one env exactly for a resume; and on
the settings both can run (frameskip 4, raw 210x160 frames) it stepped Pong
more slowly, per second and per CPU second, than one process per emulator
(``bench/bench_throughput.py``, results in ``bench/results/throughput.md``).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
from collections.abc import Iterator
from multiprocessing.connection import wait
from typing import Any

import numpy as np

from pongxp.batch import HostBatch
from pongxp.config import ConfigError
from pongxp.rollout import Actor, EpisodeStats


def actor_seed(seed: int, index: int) -> int:
    """A 32-bit seed for actor ``index`` of a run seeded with ``seed``."""
    return int(np.random.SeedSequence((seed, index)).generate_state(1)[0])


def _make_actor(env_id: str, seed: int, index: int, dtype: str) -> Actor:
    import array_api_compat.numpy as xp  # actors always run on the host

    return Actor(env_id, actor_seed(seed, index), xp, dtype)


def _worker(conn: Any, env_id: str, seed: int, index: int, dtype: str) -> None:
    # Ctrl-C is the parent's to handle; it stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    actor = _make_actor(env_id, seed, index, dtype)
    conn.send(("ready", None))
    while True:
        command, arg = conn.recv()
        if command == "weights":
            actor.set_weights(*arg)
        elif command == "play":
            for _ in range(arg):
                conn.send(("episode", actor.play()))
        elif command == "state":
            conn.send(("state", actor.state()))
        elif command == "restore":
            actor.restore(arg)
        elif command == "close":
            actor.close()
            conn.close()
            return


class ActorPool:
    """N actors that together play the episodes of each batch."""

    def __init__(self, env_id: str, seed: int, num_envs: int = 1, dtype: str = "float32") -> None:
        self.num_envs = num_envs
        self._local: Actor | None = None
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        if num_envs == 1:
            self._local = _make_actor(env_id, seed, 0, dtype)
            return
        ctx = mp.get_context("spawn")  # no fork: the parent may hold a CUDA context
        for index in range(num_envs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker, args=(child, env_id, seed, index, dtype), daemon=True
            )
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        for conn in self._conns:
            self._receive(conn, "ready")

    def set_weights(self, w1: np.ndarray, w2: np.ndarray) -> None:
        """Host weights (W1 (H, D), W2 (H,)) for the next episodes."""
        if self._local is not None:
            self._local.set_weights(w1, w2)
        for conn in self._conns:
            conn.send(("weights", (w1, w2)))

    @property
    def pids(self) -> list[int]:
        """Process ids of the worker processes (empty with one env, which runs here)."""
        return [proc.pid for proc in self._procs]

    def play(self, count: int) -> Iterator[tuple[HostBatch, EpisodeStats]]:
        """Play ``count`` episodes, yielding them in episode order."""
        if self._local is not None:
            for _ in range(count):
                yield self._local.play()
            return
        n = self.num_envs
        shares = [count // n + (1 if index < count % n else 0) for index in range(n)]
        for conn, share in zip(self._conns, shares, strict=True):
            if share:
                conn.send(("play", share))
        # Worker i plays episodes i, i + n, i + 2n, ... in that order.
        next_of = {conn: index for index, conn in enumerate(self._conns)}
        busy = [conn for conn, share in zip(self._conns, shares, strict=True) if share]
        arrived: dict[int, tuple[HostBatch, EpisodeStats]] = {}
        for j in range(count):
            while j not in arrived:
                for conn in wait(busy):
                    arrived[next_of[conn]] = self._receive(conn, "episode")
                    next_of[conn] += n
                    if next_of[conn] >= count:
                        busy.remove(conn)
            yield arrived.pop(j)

    def state(self) -> list[dict[str, Any]]:
        """Each actor's snapshot; call only between batches."""
        if self._local is not None:
            return [self._local.state()]
        for conn in self._conns:
            conn.send(("state", None))
        return [self._receive(conn, "state") for conn in self._conns]

    def restore(self, states: list[dict[str, Any]]) -> None:
        if len(states) != self.num_envs:
            raise ConfigError(
                f"the checkpoint holds {len(states)} actor states but --num-envs is "
                f"{self.num_envs}; resume with --num-envs {len(states)}"
            )
        if self._local is not None:
            self._local.restore(states[0])
            return
        for conn, state in zip(self._conns, states, strict=True):
            conn.send(("restore", state))

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
        for conn in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("close", None))
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()

    def _receive(self, conn: Any, expected: str) -> Any:
        try:
            kind, value = conn.recv()
        except EOFError:
            raise RuntimeError("a rollout worker process died; see its error above") from None
        if kind != expected:
            raise RuntimeError(f"rollout worker sent {kind!r}, expected {expected!r}")
        return value
