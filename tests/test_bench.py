"""The benchmark scripts refuse bad flags in one line, before any measuring; the
scaling model's parts (bench/scaling_model.py, both batch modes) on small known
cases; no bench script reaches into tests/ or another script's private names."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import deque
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import ROOT

from pongxp.slot_share import share_ends, slot_quota


def bench_script(name: str) -> ModuleType:
    """Import ``bench/NAME.py`` (bench/ is not a package; its modules import each other)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "bench"))


@pytest.mark.parametrize(
    ("script", "flags", "message"),
    [
        ("bench_throughput", ("--batches", "1"), "--batches must be an integer >= 2 (training's "
         "CPU time per step is the difference of a 1-batch run and a --batches run), got 1"),
        ("bench_throughput", ("--num-envs", "1", "0"), "--num-envs must be a positive integer, "
         "got 0"),
        ("bench_throughput", ("--bare-seconds", "nan"), "--bare-seconds must be a finite number "
         "> 0, got nan"),
        ("bench_scaling", ("--cores", "1", "0"), "--cores must be a positive integer, got 0"),
        ("bench_scaling", ("--check-batches", "1"), "--check-batches must be an integer >= 2, "
         "got 1"),
        ("bench_scaling", ("--log", "no-such.jsonl"), "--log no-such.jsonl is not a file; give "
         "a training run's metrics log"),
        ("bench_scaling", ("--steps-log", "no-such.jsonl"), "--steps-log no-such.jsonl is not "
         "a file; give a training run's metrics log"),
        ("bench_scaling", ("--ray-clusters", "4by16"), "--ray-clusters '4by16': give K nodes x "
         "C cores, e.g. 4x16"),
        ("bench_scaling", ("--batch-steps", "0"), "--batch-steps must be a positive integer, "
         "got 0"),
        ("bench_scaling", ("--points", "no-such.json"), "--points no-such.json is not a file; "
         "make it with bench/bench_points.py"),
        ("bench_points", ("--agent", "no-such.npz"), "--agent no-such.npz: no-such.npz is not "
         "a file"),
    ],
)  # fmt: skip
def test_bench_refuses_bad_numbers(
    script: str, flags: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = bench_script(script)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(list(flags))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {message}")


def test_scaling_model_hands_slots_to_the_first_free_actor() -> None:
    bench = bench_script("scaling_model")
    assert bench.makespan([3, 1, 1, 1], 2) == 3  # one actor plays the long slot, one the rest
    assert bench.makespan([1, 1, 1, 3], 2) == 4  # the long last slot is the straggler
    assert bench.makespan([2, 2], 8) == 2  # more actors than slots
    played = bench.play([np.array([1000.0, 1000, 1000, 3000])], [np.array([1.0, 1, 1, 3])], 2,
                        bench.Costs(step_s=1e-3, weights_s=0.0, return_s_per_step=0.0))  # fmt: skip
    shares = bench.summarise(played, 2, lambda episodes, steps: 2.0)
    assert shares["idle_in_rollouts"] == pytest.approx(1 - 6 / (2 * 4))
    assert shares["update_share"] == pytest.approx(2 / 6)
    assert shares["steps_per_s"] == pytest.approx(6000 / 6)


def test_scaling_model_reads_gpu_rows_once_committed(tmp_path: Path) -> None:
    """No GPU rows: the GPU model is pending. A bench_update result with GPU rows
    in the results folder: the same call models the GPU too, from those rows."""
    bench = bench_script("scaling_model")
    assert bench.gpu_rows(tmp_path, "float32") == ([], [])
    cpu = [bench.UpdateRow(10, 10_000, 0.12), bench.UpdateRow(10, 100_000, 0.5)]
    rows = [{"device": "gpu", "frames": "sparse CSR", "dtype": "float32", "status": "ok",
             "steps": steps, "update_s": seconds}
            for steps, seconds in ((10_000, 0.004), (100_000, 0.01))]  # fmt: skip
    rows.append({**rows[0], "dtype": "float64", "update_s": 1.0})  # another dtype: not used
    (tmp_path / "update-gpu.json").write_text(json.dumps({
        "machine": {"gpu": {"name": "Test GPU"}}, "synthetic_batch": {"episodes": 10},
        "update": rows,
    }))  # fmt: skip
    gpu, sources = bench.gpu_rows(tmp_path, "float32")
    assert [(r.steps, r.seconds) for r in gpu] == [(10_000, 0.004), (100_000, 0.01)]
    assert sources == ["results/update-gpu.json (Test GPU, 2 rows)"]
    log = bench.RunLog.read(ROOT / "pretrained" / "pong-v0.jsonl")
    costs = bench.Costs(step_s=1 / 7000, weights_s=0.003, return_s_per_step=1e-7)
    out = {}
    for name, gpu_update in (("pending", []), ("committed", gpu)):
        out[name] = bench.model(log, 200, [16], 10, costs, {"cpu": cpu, "gpu": gpu_update},
                                resamples=2, window=100, seed=0)  # fmt: skip
    assert out["pending"][1]["status"].startswith("pending")
    assert out["pending"][0] == out["committed"][0]  # the CPU rows do not change
    cpu_row, gpu_row = out["committed"]
    assert gpu_row["status"] == "ok" and gpu_row["update_on"] == "gpu"
    assert gpu_row["update_share"] < cpu_row["update_share"]
    assert gpu_row["steps_per_s"] > cpu_row["steps_per_s"]


def cut_step_by_step(games: list[list[int]], quota: int | None, shares: int) -> list[int]:
    """The oracle: shares' steps with the rule asked at every step of the games played
    back to back (reward 0 inside a point, non-zero on its last step)."""
    rewards, over = [], []
    for game in games:
        for p, length in enumerate(game):
            rewards += [0.0] * (length - 1) + [1.0]
            over += [False] * (length - 1) + [p == len(game) - 1]
    out, steps = [], 0
    for reward, ended in zip(rewards, over, strict=True):
        steps += 1
        if share_ends(steps, quota, reward, ended):
            out.append(steps)
            steps = 0
            if len(out) == shares:
                return out
    raise AssertionError("the games ran out")


@pytest.mark.parametrize("quota", [1, 25, 60, 100, None])
def test_steps_model_cuts_shares_as_the_rule_does(quota: int | None) -> None:
    """A share is at least the quota and ends at a point (new games started within
    it, a game going on carried to the next), the same as asking the rule at every
    step; no quota: one whole game a share."""
    bench = bench_script("scaling_model")
    rng = np.random.default_rng(1)
    games = [rng.integers(1, 40, size=rng.integers(2, 6)).tolist() for _ in range(40)]
    stream: deque[int] = deque()
    queue = iter(games)
    cuts = [bench.cut_share(stream, quota, lambda: list(next(queue))) for _ in range(12)]
    assert [steps for steps, _ in cuts] == cut_step_by_step(games, quota, 12)
    ends = set(np.cumsum([p for game in games for p in game]).tolist())
    assert set(np.cumsum([steps for steps, _ in cuts]).tolist()) <= ends  # at points
    assert all(steps >= (quota or 1) for steps, _ in cuts)
    if quota is None:
        assert cuts == [(sum(game), 1) for game in games[:12]]


def test_steps_model_one_actor_never_idles_and_a_known_case() -> None:
    """One actor is never idle. Two actors, two slots, quota 10: shares of 12 and 30
    steps (the points under way ran 2 and 20 past the quota) wait 18 steps."""
    bench = bench_script("scaling_model")
    costs = bench.Costs(step_s=1e-3, weights_s=0.0, return_s_per_step=0.0)
    games = iter([[4, 8, 5], [8, 22]])
    streams: list[deque[int]] = [deque(), deque()]
    steps = np.array([bench.cut_share(s, 10, lambda: list(next(games))) for s in streams])[:, 0]
    assert steps.tolist() == [12, 30]
    paused = (np.array([False, False]), np.array([bool(s) for s in streams]))
    assert paused[1].tolist() == [True, False]  # slot 0's game goes on next batch
    for actors, idle in ((1, 0.0), (2, 1 - 42 / (2 * 30))):
        played = bench.play([steps], [steps * 1e-3], actors, costs, [paused])
        shares = bench.summarise(played, actors, lambda pieces, total: 0.0)
        assert shares["idle_in_rollouts"] == pytest.approx(idle)
        assert shares["waiting_in_rollouts"] == pytest.approx(idle)  # no stream or transfer costs
        assert shares["steps_per_s"] == pytest.approx(42 / (0.03 if actors == 2 else 0.042))


def test_steps_model_over_a_logged_run() -> None:
    """Over the first 300 episodes of the committed run: games keep their logged
    lengths and 42 - |reward| points; every share reaches its quota; one actor's
    idle share is 0 (no stream costs); the slots follow the cores."""
    bench = bench_script("scaling_model")
    log = bench.RunLog.read(ROOT / "pretrained" / "pong-v0.jsonl")
    shapes = bench.PointShapes(("short", "long"), np.array([50.0, 200.0]),
                               (np.array([0.8, 1.0, 1.2]), np.array([0.5, 1.0, 2.5])))  # fmt: skip
    rng = np.random.default_rng(0)
    for steps, reward in zip(log.steps[:50], log.rewards[:50], strict=True):
        points = shapes.game(int(steps), int(reward), rng)
        assert sum(points) == steps and len(points) == 42 - abs(reward) and min(points) >= 1
    assert [bench.step_slots(n, 10) for n in (1, 2, 4, 8, 16, 64)] == [10, 10, 12, 16, 16, 64]
    to_level = float(log.steps[:300].sum())
    quota = slot_quota(34_000, 10)
    run = bench.cut_run(log, 300, to_level, 10, quota, shapes, 100, rng)
    assert sum(x.sum() for x in run.steps) >= to_level
    assert all((x >= quota).all() for x in run.steps)
    assert not run.paused[0][0].any()  # fresh streams before the first batch
    costs = bench.Costs(step_s=1 / 7000, weights_s=0.003, return_s_per_step=1e-7)
    updates = {"cpu": [bench.UpdateRow(10, 34_000, 0.1), bench.UpdateRow(10, 51_000, 0.14)]}
    setups = [bench.Setup(1, costs), bench.Setup(8, costs)]
    one, eight = bench.model_steps(log, 300, to_level, setups, 10, 34_000, shapes, updates,
                                   resamples=2, window=100, seed=0)  # fmt: skip
    assert one["idle_in_rollouts"] == pytest.approx(0.0, abs=1e-12)
    assert one["waiting_in_rollouts"] == pytest.approx(0.0, abs=1e-12)
    assert (eight["batch"], eight["quota"]) == (16, 2125)
    assert 0 < eight["idle_in_rollouts"] < 1 and eight["steps_per_s"] > 4 * one["steps_per_s"]


def test_stream_and_ray_costs_per_share() -> None:
    """A paused game's stream costs its own load and save; Ray pays per share and per
    node, worker processes per actor and nothing for the one in the trainer."""
    bench = bench_script("scaling_model")
    stream = bench.StreamCosts(load_s=1.0, save_s=2.0, load_paused_s=10.0, save_paused_s=20.0)
    around = stream.around(np.array([False, True, True]), np.array([False, False, True]))
    assert around.tolist() == [3.0, 12.0, 30.0]
    processes = bench.Costs(step_s=0.0, weights_s=0.5, return_s_per_step=0.1)
    ray = bench.Costs(step_s=0.0, weights_s=0.5, return_s_per_step=0.1, call_s=1.0, nodes=3)
    steps = np.array([10.0, 20.0])
    assert processes.weights_out(1) == 0 and processes.way_back(1, steps).tolist() == [0, 0]
    assert processes.weights_out(4) == 2.0 and processes.way_back(4, steps).tolist() == [1, 2]
    assert ray.weights_out(64) == 1.5 and ray.way_back(1, steps).tolist() == [2.0, 3.0]


def test_recording_pool_keeps_each_share(tmp_path: Path) -> None:
    """The check's pool records what the trainer's pool plays: shares of at least the
    quota, their actor time, and each game paused before and after."""
    bench = bench_script("scaling_measure")
    from pongxp.workers import fresh_streams

    pools: list = []
    pool = bench.recording_pool(pools)("Pong-v0", 1)
    try:
        streams = fresh_streams(0, 2)
        pool.set_weights(np.zeros((200, 6400), np.float32), np.zeros(200, np.float32))
        streams = [after for _, after in pool.play(streams, 40)]
        pool.set_weights(np.zeros((200, 6400), np.float32), np.zeros(200, np.float32))
        list(pool.play(streams, 40))
    finally:
        pool.close()
    assert pools == [pool] and len(pool.starts) == len(pool.shares) == 2
    first, second = pool.shares
    assert all(steps >= 40 and seconds > 0 for steps, seconds, _, _ in first + second)
    assert [s[2] for s in first] == [False, False]  # fresh streams
    assert [s[2] for s in second] == [s[3] for s in first]  # paused after is paused before


def test_bench_scripts_import_no_tests_and_no_private_names() -> None:
    """Shared pieces live in bench/machine.py; a script imports other bench modules'
    public names only, and nothing from tests/."""
    modules = {path.stem for path in (ROOT / "bench").glob("*.py")}
    for path in sorted((ROOT / "bench").glob("*.py")):
        text = path.read_text()
        assert "tests" not in {part for line in text.splitlines() if "sys.path" in line
                               for part in line.replace('"', " ").split()}, path.name  # fmt: skip
        for module in modules - {path.stem}:
            assert f"{module}._" not in text, f"{path.name} uses a private name of {module}"
            assert not any(
                line.strip().startswith(f"from {module} import") and " _" in line
                for line in text.splitlines()
            ), f"{path.name} imports a private name from {module}"
        assert "from reference import" not in text and "import reference" not in text


def test_run_to_win_stops_at_the_level_and_a_second_go_continues(tmp_path: Path) -> None:
    run_to_win = bench_script("run_to_win")
    out, work = tmp_path / "out", tmp_path / "work"
    train = ["--", "--hidden", "8", "--batch-size", "1", "--num-envs", "1", "--device", "cpu"]
    # A level no run reaches: the first go plays its 2 episodes and ends.
    flags = [str(out), "--work", str(work), "--time-limit", "600"]
    assert run_to_win.main([*flags, "--until", "21", "--episodes", "2", *train]) == 0
    first = json.loads((out / "summary.json").read_text())
    assert first["goes"][0]["stopped"] == "finished" and first["episodes"] == 2
    # Every running reward is >= -21: the second go, the same run resumed, stops at
    # its first new episode.
    assert run_to_win.main([*flags, "--until", "-21", "--episodes", "50"]) == 0
    second = json.loads((out / "summary.json").read_text())
    assert [g["stopped"] for g in second["goes"]] == ["finished", "reached -21"]
    assert second["episodes"] >= 2 and second["steps"] >= first["steps"] > 0
    assert "--resume" in (out / "train.log").read_text()
    assert len((out / "metrics.jsonl").read_text().splitlines()) >= 3


def test_profile_update_times_every_piece_on_the_cpu(tmp_path: Path) -> None:
    profile = bench_script("profile_update")
    assert profile.main(["--steps", "2000", "--repeats", "3", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "profile-update.json").read_text())
    assert all(isinstance(v, float) and v > 0 for v in record["cpu"].values()), record["cpu"]
    assert {"forward", "backward", "rmsprop", "whole update"} <= set(record["cpu"])


def test_bench_learning_stops_a_screened_run_at_its_step_cut_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-steps ends a run that needs more (it saves and could resume), and a run
    already past the cut-off is not started again. A --setting alone runs no preset."""
    bench_learning = bench_script("bench_learning")
    flags = ["--setting", "tiny", "--hidden 8 --batch-size 1", "--seeds", "0"]
    flags += ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path), "--name", "t"]
    bench_learning.main([*flags, "--episodes", "100000", "--max-steps", "1", "--jobs", "1"])
    assert "played 1 steps: tiny-s0" in capsys.readouterr().out
    log = tmp_path / "runs" / "tiny-s0" / "metrics.jsonl"
    played = len(log.read_text().splitlines())
    assert 1 <= played < 100000 and (log.parent / "checkpoint.npz").exists()
    bench_learning.main([*flags, "--episodes", "100000", "--max-steps", "1", "--jobs", "1"])
    assert "start tiny-s0" not in capsys.readouterr().out
    assert len(log.read_text().splitlines()) == played
    assert str(tmp_path) not in (tmp_path / "t.json").read_text()  # no machine's paths
    record = json.loads((tmp_path / "t.json").read_text())
    assert set(record["table"]) == {"tiny"}
    assert record["verdicts"] == [
        f"tiny seed 0: running reward 0 not reached by episode {played:,}"
    ]
    # A screen's verdict names its goal, here one every episode meets.
    bench_learning.main([*flags, "--report-only", "--until", "-21"])
    record = json.loads((tmp_path / "t.json").read_text())
    assert record["verdicts"][0].startswith("tiny seed 0: running reward -21 reached at 1 ep,")
