"""Rollout actors in parallel processes, and the per-slot streams that make a
run the same whatever their number.

Slot j of a batch (its j-th episode, or with ``--batch-steps`` its j-th share
of the steps: ``slot_share``) is always played from *stream* j: the emulator's
state with its RNG (sticky actions), the frameskip generator and the action
sampler, and an episode a batch of steps paused. A stream is a small JSON-able
dict that the trainer carries from batch to batch and saves in checkpoints; it
is either fresh, ``{"seed": s}`` (the emulator is seeded from ``s`` when first
played, a ROM reload of ~120 ms), or running, ``rollout.Actor.state()``.

Because the randomness belongs to the slot, not to the actor, any free actor
can take any slot: the parent hands the next slot to whichever actor finishes
first, so no actor waits for another one's longer episode, and the episodes,
hence the whole run, are the same for every ``--num-envs`` and finishing order.
Only ``batch_size`` slots exist, so at most that many actors can be busy.

With one actor it runs in this process; with more, each lives in a spawned
worker process that receives the weights once per batch, one slot's stream at
a time, and sends back its share (a whole episode is a few hundred KB) and the
stream's new state. ``ray_pool.RayActorPool`` does the same with Ray actors (``Pool``
is the interface both have).

Why processes and not ale-py's ``AtariVectorEnv``: the vector env only has a
fixed frameskip, so it cannot run the default ``Pong-v0`` (frameskip drawn
from 2..4) at all, nor save and restore one env exactly for a resume; and on
the settings both can run (frameskip 4, raw 210x160 frames) it stepped Pong
more slowly, per second and per CPU second, than one process per emulator
(``bench/bench_throughput.py``, results in ``bench/README.md``).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from collections import deque
from collections.abc import Iterator
from multiprocessing.connection import wait
from multiprocessing.util import Finalize
from typing import Any, Protocol

import numpy as np

from pongxp import interrupts
from pongxp.rollout import Actor, Share

Stream = dict[str, Any]
_SLOT_TAG = 0x736C6F74  # keeps these seeds apart from other (seed, ...) hashes
Played = tuple[Share, Stream]  # a slot's share of a batch and its stream's new state


class RolloutError(RuntimeError):
    """The actors cannot go on playing (a worker died, or could not be replaced)."""


class Pool(Protocol):
    """What the trainer needs of a set of rollout actors (``ActorPool``, ``RayActorPool``)."""

    num_actors: int
    busy_seconds: float
    wall_seconds: float

    @property
    def pids(self) -> list[int]: ...

    def set_weights(self, w1: np.ndarray, w2: np.ndarray) -> None: ...

    def play(
        self, streams: list[Stream], quota: int | None = None, limits: list[int] | None = None
    ) -> Iterator[Played]: ...

    def close(self) -> None: ...


def stream_seed(seed: int, slot: int, episode: int = 0) -> int:
    """32-bit seed of slot ``slot``'s stream, made fresh after ``episode`` episodes."""
    return int(np.random.SeedSequence((seed, _SLOT_TAG, slot, episode)).generate_state(1)[0])


def fresh_streams(seed: int, slots: range | int, episode: int = 0) -> list[Stream]:
    """Fresh streams for ``slots`` (a count or a range of slot indices)."""
    if isinstance(slots, int):
        slots = range(slots)
    return [{"seed": stream_seed(seed, j, episode)} for j in slots]


def fit_streams(streams: list[Stream], slots: int, seed: int, episode: int) -> list[Stream]:
    """``streams`` cut or extended (with fresh ones) to ``slots``, for a resume
    with another ``--batch-size`` or from a checkpoint that has none."""
    return streams[:slots] + fresh_streams(seed, range(len(streams), slots), episode)


def _make_actor(env_id: str, dtype: str) -> Actor:
    import array_api_compat.numpy as xp  # actors always run on the host

    # Any seed: every episode starts by loading its slot's stream.
    return Actor(env_id, 0, xp, dtype)


def play_stream(
    actor: Actor, stream: Stream, quota: int | None, limit: int | None = None
) -> Played:
    """Play a slot's share from its stream (``slot_share``), ending no more than
    ``limit`` episodes (None: any); every kind of actor plays through this, so all
    give the same batches."""
    actor.load_stream(stream)
    share = actor.play_share(quota, episodes=limit)
    return share, actor.state()


def _worker(conn: Any, env_id: str, dtype: str) -> None:
    # Signals (a terminal's Ctrl-C and SIGHUP reach workers too) are the trainer's
    # to act on; it stops the workers itself (interrupts).
    interrupts.ignore_in_child()
    # OSError: a broken or reset pipe, or "end of file during message" when the
    # trainer died halfway through sending one (the weights are a few MB).
    with contextlib.suppress(EOFError, OSError):
        _serve(conn, env_id, dtype)  # until the trainer closes the pipe, or is gone


def _serve(conn: Any, env_id: str, dtype: str) -> None:
    actor = _make_actor(env_id, dtype)
    conn.send(("ready", None))
    while True:
        command, arg = conn.recv()
        if command == "weights":
            actor.set_weights(*arg)
        elif command == "play":
            slot, stream, quota, limit = arg
            conn.send(("share", (slot, *play_stream(actor, stream, quota, limit))))
        elif command == "close":
            actor.close()
            conn.close()
            return


def _kill(procs: list[Any]) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join()


def _send(conn: Any, message: tuple[str, Any]) -> None:
    try:
        conn.send(message)
    except OSError:  # BrokenPipeError and the like: the worker is gone
        raise RolloutError("a rollout worker process died; see its error above") from None


def count_busy(pool: Pool, played: Played, since: float) -> float:
    """Add a share about to be handed out to ``pool``'s busy and wall times.

    Both count up to the last episode handed out, so a batch cut short
    (Ctrl-C) leaves them consistent and the idle share never comes out
    negative. Returns the time counted up to.
    """
    now = time.perf_counter()
    pool.busy_seconds += played[0].seconds
    pool.wall_seconds += now - since
    return now


class ActorPool:
    """``num_actors`` actors that share out the slots of each batch as they free up.

    ``busy_seconds`` sums the actors' time inside episodes and ``wall_seconds``
    the time spent in ``play`` calls, both over the pool's life, so the actors'
    idle share while batches were played is ``1 - busy / (num_actors * wall)``.
    """

    def __init__(self, env_id: str, num_actors: int = 1, dtype: str = "float32") -> None:
        self.num_actors = num_actors
        self.busy_seconds = 0.0
        self.wall_seconds = 0.0
        self._local: Actor | None = None
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        self._busy: set[Any] = set()
        self._limits: list[int] | None = None  # the batch being played's (``play``)
        if num_actors == 1:
            self._local = _make_actor(env_id, dtype)
            return
        ctx = mp.get_context("spawn")  # no fork: the parent may hold a CUDA context
        # Workers ignore SIGTERM, with which multiprocessing stops them at exit:
        # whatever ends this process without ``close`` kills them first.
        Finalize(self, _kill, (self._procs,), exitpriority=10)
        try:
            for _ in range(num_actors):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker, args=(child, env_id, dtype), daemon=True)
                with interrupts.starting_child():  # an interrupt here comes after these
                    proc.start()
                    self._conns.append(parent)
                    self._procs.append(proc)
                child.close()
            for conn in self._conns:
                self._receive(conn, "ready")
        except BaseException:  # e.g. Ctrl-C while they start: stop those started
            self._busy.update(self._conns)  # (close kills busy ones at once)
            self.close()
            raise

    def set_weights(self, w1: np.ndarray, w2: np.ndarray) -> None:
        """Host weights (W1 (H, D), W2 (H,)) for the next episodes."""
        if self._local is not None:
            self._local.set_weights(w1, w2)
        for conn in self._conns:
            _send(conn, ("weights", (w1, w2)))

    @property
    def pids(self) -> list[int]:
        """Process ids of the worker processes (empty with one actor, which runs here)."""
        return [proc.pid for proc in self._procs]

    def play(
        self, streams: list[Stream], quota: int | None = None, limits: list[int] | None = None
    ) -> Iterator[Played]:
        """Play each slot's share of a batch from its stream; yield them in slot order.

        Args:
            quota: ``slot_share.slot_quota``'s steps a share; None: one episode each.
            limits: the episodes each slot's share may end at most
                (``slot_share.episode_allowances``); None: no limit.

        Yields:
            (share, stream): what was played from ``streams[j]`` and that
            stream's state after it, for j = 0, 1, ...
        """
        self._limits = limits
        if self._local is not None:
            for j, stream in enumerate(streams):
                start = time.perf_counter()
                played = play_stream(self._local, stream, quota, limits[j] if limits else None)
                count_busy(self, played, start)
                yield played
            return
        start = time.perf_counter()
        pending = deque(enumerate(streams))
        for conn in self._conns[: len(streams)]:
            self._dispatch(conn, pending, quota)
        arrived: dict[int, Played] = {}
        for j in range(len(streams)):
            while j not in arrived:
                for conn in wait(list(self._busy)):
                    slot, *played = self._receive(conn, "share")
                    self._busy.discard(conn)
                    # Hand out the next slot before anything else, so the actor
                    # plays while the trainer logs what came back.
                    self._dispatch(conn, pending, quota)
                    arrived[slot] = tuple(played)  # type: ignore[assignment]
            start = count_busy(self, arrived[j], start)
            yield arrived.pop(j)

    def _dispatch(self, conn: Any, pending: deque[tuple[int, Stream]], quota: int | None) -> None:
        if pending:
            slot, stream = pending.popleft()
            limit = self._limits[slot] if self._limits else None
            _send(conn, ("play", (slot, stream, quota, limit)))
            self._busy.add(conn)

    def close(self) -> None:
        """Stop the actors. Busy ones (a batch cut short by Ctrl-C) are killed at
        once: their episodes would be thrown away, and streams live in the parent."""
        if self._local is not None:
            self._local.close()
        for conn, proc in zip(self._conns, self._procs, strict=True):
            if conn in self._busy:
                proc.kill()
            else:
                with contextlib.suppress(BrokenPipeError, OSError):
                    conn.send(("close", None))
        for proc in self._procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._busy.clear()

    def _receive(self, conn: Any, expected: str) -> Any:
        try:
            kind, value = conn.recv()
        except EOFError:
            raise RolloutError("a rollout worker process died; see its error above") from None
        if kind != expected:
            raise RolloutError(f"rollout worker sent {kind!r}, expected {expected!r}")
        return value
