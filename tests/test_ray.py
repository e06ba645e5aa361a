"""Rollouts on Ray actors (GitHub issue 10), on the real emulator and a real local Ray.

The runs join one Ray instance that this test session starts (the
``ray_address`` fixture), except the Ctrl-C test, which checks that a run's own
local instance goes away with it. Each compares with ``--actors processes``:
the same seed must give the same episodes and weights, bit for bit, whatever
happens to the Ray actors in between.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    NOTE,
    assert_same_run,
    episode_line,
    error_line,
    finish,
    finished_with_notes,
    logged,
    needs,
    patient_ray,
    run_cli_without,
    saved_line,
    start,
    train_argv,
    wait_for,
)
from conftest import RAY_EPISODES as EPISODES
from conftest import RAY_SMALL as SMALL

from pongxp import checkpoint, cli


def train(tmp_path: Path, name: str, *flags: str, env: dict[str, str] | None = None) -> str:
    """A finished training run into tmp_path/name.*; its stdout."""
    code, out, err = finish(start(train_argv(tmp_path / name, *SMALL, *flags), env=env))
    assert code == 0, err
    return out


def test_ray_actors_play_the_same_run_as_processes(
    ray_address: str, processes_run: Path, tmp_path: Path
) -> None:
    out = train(tmp_path, "ray", "--episodes", str(EPISODES), "--num-envs", "2",
                "--actors", "ray", "--ray-address", ray_address)  # fmt: skip
    assert "2 Ray actors" in out and NOTE not in out
    assert_same_run(tmp_path, "ray", processes_run)


def test_half_on_ray_resumed_with_processes_is_exact(
    ray_address: str, processes_run: Path, tmp_path: Path
) -> None:
    train(tmp_path, "split", "--episodes", str(EPISODES // 2), "--num-envs", "2",
          "--actors", "ray", "--ray-address", ray_address)  # fmt: skip
    saved = checkpoint.load(tmp_path / "split" / "checkpoint.npz")
    assert saved.episode == EPISODES // 2 and saved.config.actors == "ray"
    # actors and ray_address are run settings: the resume uses processes, 1 actor.
    out = train(tmp_path, "split", "--resume", str(tmp_path / "split" / "checkpoint.npz"),
                "--episodes", str(EPISODES), "--num-envs", "1")  # fmt: skip
    assert "1 actor\n" in out and "Ray" not in out
    assert_same_run(tmp_path, "split", processes_run)


def _run_actors(namespaces_before: set[str]) -> list[dict[str, str]]:
    """The named rollout actors of the one run started after ``namespaces_before``."""
    import ray

    named = ray.util.list_named_actors(all_namespaces=True)
    return [
        a
        for a in named
        if a["name"].startswith("pongxp-rollout-") and a["namespace"] not in namespaces_before
    ]


def _kill(actor: dict[str, str]) -> None:
    import ray

    with contextlib.suppress(ValueError):  # gone already
        ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]))


def _namespaces() -> set[str]:
    import ray

    return {a["namespace"] for a in ray.util.list_named_actors(all_namespaces=True)}


def test_actors_killed_mid_batch_are_replaced_and_the_run_is_unchanged(
    ray_address: str, processes_run: Path, tmp_path: Path
) -> None:
    """Both actors are killed with ray.kill right after the first episode is logged:
    then one plays slot 1 and the other slot 2 (or has just finished it)."""
    before = _namespaces()
    ckpt = tmp_path / "killed" / "checkpoint.npz"
    argv = train_argv(ckpt, *SMALL[:-1], "--episodes", str(EPISODES), "--num-envs", "2",
                      "--actors", "ray", "--ray-address", ray_address)  # fmt: skip
    proc = start(argv)
    wait_for(lambda: len(_run_actors(before)) == 2, proc)
    actors = _run_actors(before)
    wait_for(lambda: logged(ckpt.with_name("metrics.jsonl")) >= 1, proc)
    for actor in actors:
        _kill(actor)
    lines, notes = finished_with_notes(proc)
    assert len(notes) == 2, lines
    third = episode_line(lines, 3)
    assert notes[0] < third, "the first replacement should come inside the first batch"
    assert_same_run(tmp_path, "killed", processes_run)


def test_actors_that_keep_dying_stop_the_run_with_one_line(
    ray_address: str, tmp_path: Path
) -> None:
    """Every actor of the run is killed as soon as it shows up, from its first
    logged episode on: the slot in play loses MAX_DEATHS actors, the run saves
    what it had committed and stops with one line."""
    from pongxp.ray_pool import MAX_DEATHS

    before = _namespaces()
    ckpt = tmp_path / "run" / "checkpoint.npz"
    argv = train_argv(ckpt, "--hidden", "16", "--batch-size", "1", "--device", "cpu",
                      "--quiet", "--episodes", "50", "--checkpoint-every", "1000",
                      "--actors", "ray", "--ray-address", ray_address)  # fmt: skip
    proc = start(argv)
    wait_for(lambda: logged(ckpt.with_name("metrics.jsonl")) >= 1, proc)
    done = threading.Event()

    def killer() -> None:
        while not done.is_set():
            for actor in _run_actors(before):
                _kill(actor)
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result = finish(proc)
    finally:
        done.set()
        thread.join()
    line = error_line(result)
    assert result[0] == 3, result[2]
    saved = checkpoint.load(ckpt)
    assert saved.episode >= 1
    assert f"Ray actors died {MAX_DEATHS} times playing slot 0 of a batch" in line, line
    assert re.search(r"\(last: \w*Actor\w*Error: ", line), line
    assert line.endswith(
        f"saved episode {saved.episode} to {ckpt}; continue with: python train.py --resume "
        f"{ckpt.parent} --device cpu --actors ray --ray-address {ray_address}"
    )


def _descendants(pid: int) -> set[int]:
    found, stack = set(), [pid]
    while stack:
        for task in Path(f"/proc/{stack.pop()}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            found.update(kids)
            stack.extend(kids)
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_ctrl_c_saves_and_stops_the_local_ray_instance(tmp_path: Path) -> None:
    """A run without --ray-address starts its own Ray (GCS, raylet, workers, all its
    descendants); Ctrl-C to the process group mid-batch saves, and none of them stay."""
    pytest.importorskip("ray")
    ckpt, metrics = tmp_path / "run" / "checkpoint.npz", tmp_path / "run" / "metrics.jsonl"
    argv = train_argv(ckpt, *SMALL, "--episodes", "100", "--checkpoint-every", "1000",
                      "--num-envs", "2", "--actors", "ray")  # fmt: skip
    # An empty RAY_ADDRESS counts as none: this run starts its own Ray.
    proc = start(argv, env={"RAY_ADDRESS": ""}, start_new_session=True)
    wait_for(lambda: logged(metrics) >= 1, proc)
    ray_procs = _descendants(proc.pid)
    names = {Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0] for p in ray_procs}
    assert any(b"raylet" in n for n in names) and len(ray_procs) >= 4, names
    os.killpg(proc.pid, signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130, err
    assert "Traceback" not in err and "A.L.E" not in err, err  # Ray may log; we may not
    saved = checkpoint.load(ckpt)
    last = out.strip().splitlines()[-1]
    assert saved_line(last, saved.episode, ckpt), last
    assert last.endswith(
        f"; continue with: python train.py --resume {ckpt.parent} --device cpu --num-envs 2 "
        "--actors ray"
    )
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in ray_procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in ray_procs if _alive(p)]
    assert left == [], [Path(f"/proc/{p}/cmdline").read_bytes() for p in left]


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def not_ray_port() -> Iterator[int]:
    """A port where an HTTP/1 server (not Ray's gRPC) answers every request with 400."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed at the end of the test
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def grpc_port() -> Iterator[int]:
    """A port where a gRPC server with no services answers (HTTP/2, but not Ray).

    It runs in a process of its own: gRPC threads in this one would write
    their fork warnings into every child the tests start.
    """
    pytest.importorskip("grpc")  # Ray's dependency
    code = (
        "import time; from concurrent.futures import ThreadPoolExecutor; import grpc\n"
        "server = grpc.server(ThreadPoolExecutor(max_workers=1))\n"
        "print(server.add_insecure_port('127.0.0.1:0'), flush=True)\n"
        "server.start(); time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("case", ["closed port", "not Ray", "gRPC, not Ray", "RAY_ADDRESS"])
@needs("ray", "ray")
def test_unreachable_ray_address_fails_in_one_line_before_any_work(
    case: str, closed_port: int, not_ray_port: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ports = {"not Ray": not_ray_port}
    if case == "gRPC, not Ray":  # only then: its server is a process of its own
        ports[case] = request.getfixturevalue("grpc_port")
    port = ports.get(case, closed_port)
    address = f"127.0.0.1:{port}"
    given = () if case == "RAY_ADDRESS" else ("--ray-address", address)
    env = {"RAY_ADDRESS": address} if case == "RAY_ADDRESS" else {}
    ckpt = tmp_path / "run" / "checkpoint.npz"
    began = time.monotonic()
    result = finish(start(train_argv(ckpt, *SMALL, "--actors", "ray", *given), env=env))
    line = error_line(result)
    assert result[0] == 2
    assert time.monotonic() - began < 30
    if case in ports:
        assert line == (
            f"error: {address} (--ray-address) does not answer as a Ray cluster; use the "
            "address `ray start --head` printed (its GCS port, 6379 by default)"
        )
    else:
        where = "$RAY_ADDRESS" if case == "RAY_ADDRESS" else "--ray-address"
        assert line.startswith(f"error: cannot reach a Ray cluster at {address} ({where}): ")
        assert "Connection refused" in line and "`ray start --head`" in line
    assert not ckpt.exists() and not ckpt.with_name("metrics.jsonl").exists()
    assert "episode" not in result[1]


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--ray-address", "127.0.0.1:6379"), "--ray-address is for Ray actors; add --actors ray"),
        (("--actors", "ray", "--ray-address", "head-node"), "--ray-address must be HOST:PORT"),
        (("--actors", "ray", "--ray-address", "http://h:1"), "--ray-address must be HOST:PORT"),
    ],
)
def test_bad_ray_flags_fail_before_any_work(
    flags: tuple[str, ...], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--run", str(tmp_path / "run"), *SMALL, *flags]
    assert cli.train_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err
    assert list(tmp_path.iterdir()) == []


def test_ray_actors_without_ray_name_the_extra(tmp_path: Path) -> None:
    """Runs everywhere: the child is made to see no Ray."""
    result = run_cli_without(
        "ray", "train", "--actors", "ray", "--run", str(tmp_path / "run"), "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    root = Path(__file__).resolve().parents[1]
    assert error_line(result) == (
        f"error: --actors ray needs ray, which is not installed; pip install -e '.[ray]' in {root}"
    )
    assert result.stdout == ""


def test_ray_nodes_started_by_the_tests_get_minutes_to_come_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 34: Ray gives a new node's raylet 30 s to register, which a busy machine
    missed; ``patient_ray`` makes the look-up Ray polls wait for the node itself."""
    pytest.importorskip("ray")
    import inspect

    import ray._private.node
    from ray._private import services

    # Ray waits through this module attribute, the one patient_ray replaces.
    assert "ray._private.services.get_node(" in inspect.getsource(ray._private.node.Node)
    tries = []

    def slow_node(*args: object) -> str:
        tries.append(args)
        if len(tries) < 4:
            raise RuntimeError("GCS cannot find the node")  # not registered yet
        return "node info"

    monkeypatch.setattr(services, "get_node", slow_node)
    with patient_ray("a test node", seconds=60):
        assert services.get_node("gcs", "id") == "node info"  # one look-up, waiting
    assert len(tries) == 4 and services.get_node is slow_node
    tries.clear()
    failed = pytest.raises(pytest.fail.Exception, match="a test node did not start within 0 s")
    with failed, patient_ray("a test node", seconds=0):
        services.get_node("gcs", "id")


def test_a_local_ray_that_does_not_start_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Issue 34: a raylet that missed Ray's 30 s on a busy machine gave a traceback."""
    ray = pytest.importorskip("ray")

    def slow_raylet(**kwargs: object) -> None:
        raise Exception(
            "The current node timed out during startup. This could happen because some of "
            "the raylet failed to startup or the GCS has become overloaded."
        )

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # (the session's own is)
    monkeypatch.setattr(ray, "init", slow_raylet)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code = cli.train_main(["--actors", "ray", "--num-envs", "1", "--batch-size", "1",
                           "--device", "cpu", "--checkpoint", str(tmp_path / "run.npz"),
                           "--metrics", str(tmp_path / "run.jsonl")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3 and err == (
        "error: the local Ray instance did not start: Exception: The current node timed out "
        "during startup. This could happen because some of the raylet failed to startup or "
        "the GCS has become overloaded.; on a busy machine run it again, or use --actors "
        "processes\n"
    ), err
