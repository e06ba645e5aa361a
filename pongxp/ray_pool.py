"""Rollout actors on Ray: a local Ray instance, or a cluster of machines.

``RayActorPool`` has the interface of ``workers.ActorPool`` (``workers.Pool``)
and plays each slot of a batch from the same stream with the same code
(``workers.play_stream``), so a run with ``--actors ray`` plays exactly the
episodes of a run with ``--actors processes``, for any number of actors.

Per batch the weights go out once: one ``ray.put``, whose ObjectRef travels
with every ``play`` call inside a list (Ray resolves only top-level ObjectRef
arguments), so an actor fetches and converts the weights only when the ref is
new, i.e. once a batch, and a replacement actor gets them with its first
slot. Each call returns a slot's share of the batch (``rollout.Share``) and the
stream's new state.

Faults: the streams of a batch stay in this process, so an actor that dies
mid-batch (``ray.kill``, a crashed worker or node) loses nothing: a new actor
replays that slot from the stream it was given, and the run stays the same.
When the cluster has no CPU for a new actor (a node left it), the pool goes on
with the actors it has left, which play the slot in turn; with none left it
stops with a one-line ``workers.RolloutError``. So does a slot whose actor dies
``MAX_DEATHS`` times, an actor that raises, or a replacement that cannot start.

This module imports Ray at the top: import it only for ``--actors ray``
(``trainer._open_ray_pool`` checks that Ray is installed first).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import ray
from ray import exceptions as rex

from pongxp.config import ConfigError, TrainConfig
from pongxp.workers import (
    Played,
    RolloutError,
    Stream,
    _make_actor,
    count_busy,
    play_stream,
)

#: Seconds to wait for actors to start (imports and a ROM load each; a new node's
#: worker may take longer) before concluding the cluster has no room for them.
START_TIMEOUT_S = 120.0
#: Seconds to wait for --ray-address to connect and answer before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0
#: Actor deaths on one slot of a batch after which the pool gives up.
MAX_DEATHS = 3
#: Seconds between checks, while a replacement actor waits to start, that the
#: cluster still has the CPUs for it.
ROOM_CHECK_S = 1.0
#: Failures that lose an actor (or the node it ran on), not a bug in its code:
#: the slot is replayed on a new actor.
_LOST = (rex.RayActorError, rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError)


class _NoRoom(Exception):
    """The cluster lost the CPUs that a replacement actor was waiting for."""


def _cluster_cpus() -> int:
    """CPUs of the cluster's live nodes (Ray drops a node's once it notices the node is gone)."""
    return int(ray.cluster_resources().get("CPU", 0))


def _last_line(exc: BaseException) -> str:
    """The last non-empty line of an exception's text: Ray's are long, this is the gist."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


class RolloutActor:
    """One ``rollout.Actor`` in a Ray worker process (made remote by ``_remote``)."""

    def __init__(self, env_id: str, dtype: str) -> None:
        self.actor = _make_actor(env_id, dtype)
        self.weights: Any = None  # the ObjectRef of the weights set last

    def pid(self) -> int:
        return os.getpid()

    def play(
        self, weights: list[Any], stream: Stream, quota: int | None, limit: int | None = None
    ) -> Played:
        """Play a slot's share from ``stream`` with the weights in ``weights[0]``."""
        if weights[0] != self.weights:
            self.actor.set_weights(*ray.get(weights[0]))
            self.weights = weights[0]
        return play_stream(self.actor, stream, quota, limit)


# One CPU each: Ray places no more actors on a node than it has cores.
_remote = ray.remote(num_cpus=1, max_restarts=0)(RolloutActor)


def open_ray_pool(cfg: TrainConfig, say: Callable[[str], None]) -> tuple[RayActorPool, str]:
    """Connect to (or start) Ray as ``cfg`` says, and start its rollout actors.

    ``cfg.ray_address`` (or ``$RAY_ADDRESS``) joins that cluster, and ``num_envs``
    auto means one actor per cluster CPU; without one, a local Ray instance
    starts with one CPU per actor. A Ray this process had already started
    (``ray.init`` by the caller) is used as it is and left running.

    Returns:
        The pool and a note on the number of actors ("" when it is ``num_envs``).

    Raises:
        ConfigError: the address cannot be reached or joined, or has no CPUs.
        RolloutError: the local Ray instance or the actors did not start.
    """
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS") or None
    owned = not ray.is_initialized()
    if not owned:
        num_actors, note = _cluster_actors(cfg, "the running Ray instance")
    elif address is None:
        num_actors, note = cfg.num_actors()
        say(f"starting a local Ray instance with {num_actors} CPUs")
        try:
            ray.init(
                address="local",
                num_cpus=num_actors,
                include_dashboard=False,
                log_to_driver=False,  # actor failures come back as exceptions, in one line
                logging_level=logging.ERROR,
            )
        except Exception as exc:  # e.g. its raylet missed Ray's fixed 30 s on a busy machine
            with contextlib.suppress(Exception):
                ray.shutdown()
            raise RolloutError(
                f"the local Ray instance did not start: {_last_line(exc)}; on a busy machine "
                "run it again, or use --actors processes"
            ) from exc
    else:
        where = "--ray-address" if cfg.ray_address else "$RAY_ADDRESS"
        _check_reachable(address, where)
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as exc:  # Ray's many reasons (version mismatch, auth, ...), in one line
            # Recent Rays' `ray start` turns token authentication on, and a driver
            # given an address only uses a token when told to.
            hint = (
                "; if the cluster uses token authentication, set RAY_AUTH_MODE=token "
                "(token in ~/.ray/auth_token or RAY_AUTH_TOKEN)"
                if "RAY_AUTH_MODE" not in os.environ
                else ""
            )
            raise ConfigError(
                f"cannot join the Ray cluster at {address}: {_last_line(exc)}{hint}"
            ) from exc
        try:
            num_actors, note = _cluster_actors(cfg, f"the Ray cluster at {address}")
        except ConfigError:
            ray.shutdown()
            raise
    pool = RayActorPool(cfg.env_id, num_actors, cfg.dtype, shutdown=owned, say=say)
    return pool, note


def _cluster_actors(cfg: TrainConfig, where: str) -> tuple[int, str]:
    """``cfg.num_actors`` against the CPUs of the cluster this process is connected to."""
    cpus = _cluster_cpus()
    if cpus == 0:
        raise ConfigError(f"{where} has no CPUs for rollout actors; add nodes with CPUs")
    num_actors, note = cfg.num_actors(cores=cpus, where=f"CPUs of {where}")
    if num_actors > cpus:  # such actors would wait for a CPU forever
        raise ConfigError(
            f"--num-envs {num_actors} needs {num_actors} CPUs but {where} has {cpus}; "
            f"use --num-envs {cpus} or fewer, or add nodes"
        )
    return num_actors, note


#: An HTTP/2 client's opening (preface and an empty SETTINGS frame); a gRPC server
#: such as Ray's GCS answers it with a SETTINGS frame of its own.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _check_reachable(address: str, where: str) -> None:
    """Fail in one line, within seconds, unless a gRPC server answers at ``address``.

    ``ray.init`` would retry for many minutes against a closed port, or forever
    against a server that is not Ray's (e.g. the dashboard's HTTP port). The
    HTTP/2 greeting tells a gRPC server from others; with TLS (RAY_USE_TLS) only
    the TCP connection is checked. ``auto`` is left to Ray, which fails at once
    when it finds no cluster on this machine.
    """
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    tls = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S) as sock:
            if tls:
                return
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.sendall(_HTTP2_HELLO)
            answer = b""
            while len(answer) < 9 and (chunk := sock.recv(9 - len(answer))):
                answer += chunk
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"cannot reach a Ray cluster at {address} ({where}): {reason or 'timed out'}; "
            "start one there with `ray start --head`, or fix the address"
        ) from None
    if len(answer) < 9 or answer[3] != 4 or not _answers_as_ray_gcs(address):
        # (answer[3] is the frame type; 4 is SETTINGS.)
        raise ConfigError(
            f"{address} ({where}) does not answer as a Ray cluster; use the address "
            "`ray start --head` printed (its GCS port, 6379 by default)"
        )


#: Codes by which a gRPC server says it is not Ray's GCS, or not in time. Others
#: (OK, UNAUTHENTICATED with token auth, ...) come from a GCS.
_NOT_GCS = ("UNIMPLEMENTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN", "INTERNAL")


def _answers_as_ray_gcs(address: str) -> bool:
    """Whether the gRPC server at ``address`` knows a method of Ray's GCS.

    Another gRPC or HTTP/2 server passes the greeting check, and ``ray.init``
    would then retry for about 20 s, printing its warnings. A Ray Client
    address (ray://) serves other methods and is left to Ray.
    """
    if address.startswith("ray://"):
        return True
    import grpc  # Ray's own dependency

    with grpc.insecure_channel(address) as channel:
        # Raw bytes in and out: an empty message is a valid request of any type.
        call = channel.unary_unary("/ray.rpc.NodeInfoGcsService/GetClusterId")
        try:
            call(b"", timeout=CONNECT_TIMEOUT_S)
        except grpc.RpcError as exc:
            return exc.code().name not in _NOT_GCS
    return True


class RayActorPool:
    """``num_actors`` Ray actors that share out the slots of each batch as they free up.

    Ray must be initialised (``open_ray_pool`` does it). ``close`` ends the
    actors and, with ``shutdown``, this process's Ray: stopping a local
    instance with its workers, or leaving a cluster.
    """

    def __init__(
        self,
        env_id: str,
        num_actors: int,
        dtype: str = "float32",
        shutdown: bool = False,
        say: Callable[[str], None] = print,
    ) -> None:
        self.num_actors = num_actors
        self.busy_seconds = 0.0
        self.wall_seconds = 0.0
        self._env_id, self._dtype = env_id, dtype
        self._shutdown = shutdown
        self._say = say
        self._weights: list[Any] = []  # [ObjectRef of (W1, W2)]; a list so Ray passes the ref
        self._actors: list[Any] = []
        self._pids: list[int] = []
        self._started = 0  # actors started so far, for their names
        try:
            self._actors, self._pids = self._start(num_actors)
        except rex.RayError as exc:  # e.g. pongxp or ale-py missing on a node
            self.close()
            raise RolloutError(f"a Ray rollout actor failed to start: {_last_line(exc)}") from exc
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> list[int]:
        """Process ids of the actors' Ray workers (on their own nodes)."""
        return list(self._pids)

    def set_weights(self, w1: np.ndarray, w2: np.ndarray) -> None:
        """Host weights (W1 (H, D), W2 (H,)) for the next episodes: one put for all actors."""
        self._weights = [ray.put((w1, w2))]

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

        Raises:
            RolloutError: an actor raised, or slots kept losing their actors.
        """
        start = time.perf_counter()
        pending = deque(range(len(streams)))
        running: dict[Any, tuple[Any, int]] = {}  # ObjectRef -> (actor, slot)

        def dispatch(actor: Any, slot: int) -> None:
            limit = limits[slot] if limits else None
            ref = actor.play.remote(self._weights, streams[slot], quota, limit)
            running[ref] = (actor, slot)

        def dispatch_idle() -> None:
            busy = {actor for actor, _ in running.values()}
            for actor in self._actors:
                if pending and actor not in busy:
                    dispatch(actor, pending.popleft())

        dispatch_idle()
        arrived: dict[int, Played] = {}
        deaths: Counter[int] = Counter()
        for j in range(len(streams)):
            while j not in arrived:
                [ref], _ = ray.wait(list(running), num_returns=1)
                actor, slot = running.pop(ref)
                try:
                    played = ray.get(ref)
                except _LOST as exc:
                    replacement = self._replace(actor, slot, deaths, exc)
                    if replacement is None:  # no CPU for one: the actors left play the slot
                        pending.appendleft(slot)
                        dispatch_idle()
                    else:
                        dispatch(replacement, slot)  # the same stream: the same episode
                    continue
                except rex.RayTaskError as exc:  # the rollout code itself failed
                    raise RolloutError(f"a Ray rollout actor failed: {_last_line(exc)}") from exc
                if pending:  # before anything else, so the actor plays while we log
                    dispatch(actor, pending.popleft())
                arrived[slot] = played
            start = count_busy(self, arrived[j], start)
            yield arrived.pop(j)

    def _replace(self, actor: Any, slot: int, deaths: Counter[int], exc: BaseException) -> Any:
        """Put a new actor in place of lost ``actor``, or give up on ``slot``.

        Returns:
            The new actor, or None when the cluster has no CPU for one (a node
            left it): the lost actor is dropped and the pool goes on with the rest.

        Raises:
            RolloutError: ``slot`` lost ``MAX_DEATHS`` actors (a replacement lost
            while starting counts as another death), or no actor is left.
        """
        index = self._actors.index(actor)
        while True:
            deaths[slot] += 1
            if deaths[slot] >= MAX_DEATHS:
                raise RolloutError(
                    f"Ray actors died {deaths[slot]} times playing slot {slot} of a batch "
                    f"(last: {_last_line(exc)}); check the cluster's nodes and logs"
                ) from exc
            with contextlib.suppress(Exception):  # it may be gone already
                ray.kill(self._actors[index])
            lost = f"lost the actor given slot {slot} ({_last_line(exc)})"
            # The live actors and a new one need as many CPUs as the pool has actors.
            if _cluster_cpus() >= len(self._actors):
                self._say(f"ray: {lost}; replaying that slot on a new actor")
                try:
                    [self._actors[index]], [self._pids[index]] = self._start(1, room=True)
                    return self._actors[index]
                except _LOST as again:
                    exc = again
                    continue
                except _NoRoom:  # the cluster had not yet noticed that the node was gone
                    lost = f"the new actor for slot {slot} lost its CPU while starting"
            del self._actors[index], self._pids[index]
            self.num_actors = len(self._actors)
            if not self._actors:
                raise RolloutError(
                    f"the Ray cluster has no CPUs left for rollout actors ({lost}); add nodes to it"
                ) from exc
            self._say(
                f"ray: {lost}; no CPU is left in the cluster for a new one, so the run goes on "
                f"with {self.num_actors} actor{'s' if self.num_actors > 1 else ''}"
            )
            return None

    def _start(self, count: int, room: bool = False) -> tuple[list[Any], list[int]]:
        """``count`` new actors, ready.

        With ``room``, stop waiting as soon as the cluster has fewer CPUs than the
        pool's actors (the new ones counted): a node that left makes its CPUs
        vanish only once Ray notices, after the actors on it were lost.

        Raises:
            RolloutError: they did not start in time (no free CPUs).
            _NoRoom: with ``room``, the cluster lost the CPUs they were waiting for.
            The Ray error of an actor lost while starting (its creation failed).
        """
        # Named, so that `ray list actors` (and the tests) can tell them apart.
        first, self._started = self._started, self._started + count
        actors = [
            _remote.options(name=f"pongxp-rollout-{n}").remote(self._env_id, self._dtype)
            for n in range(first, first + count)
        ]
        refs = [actor.pid.remote() for actor in actors]
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            ready: list[Any] = []
            while len(ready) < count and time.monotonic() < deadline:
                ready, _ = ray.wait(refs, num_returns=count, timeout=ROOM_CHECK_S)
                if len(ready) < count and room and _cluster_cpus() < len(self._actors):
                    raise _NoRoom
            if len(ready) < count:
                free = int(ray.available_resources().get("CPU", 0))
                raise RolloutError(
                    f"{count - len(ready)} of {count} Ray actors did not start within "
                    f"{START_TIMEOUT_S:.0f} s ({free} CPUs free in the cluster); "
                    "use a smaller --num-envs or add nodes"
                )
            return actors, ray.get(refs)
        except BaseException:
            for actor in actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor)
            raise

    def close(self) -> None:
        """End the actors (busy ones too: streams live here, so nothing is lost), then
        this process's Ray if it started or joined it. Safe to call twice."""
        for actor in self._actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        self._actors = []
        self._weights = []
        if self._shutdown and ray.is_initialized():
            ray.shutdown()
