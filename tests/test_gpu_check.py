"""bench/gpu_check.py: refuses cleanly without a GPU, judges test outcomes as the GPU
machine needs, and times a real training run's updates (its --cpu-only parts)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, cli_env

SCRIPT = ROOT / "bench" / "gpu_check.py"
sys.path.insert(0, str(SCRIPT.parent))  # bench/ is not a package
try:
    gpu_check = importlib.import_module("gpu_check")  # (in sys.modules: it has dataclasses)
finally:
    sys.path.remove(str(SCRIPT.parent))


def run_script(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True, text=True, timeout=240, cwd=cwd, env={**cli_env(), **env},
    )  # fmt: skip


def test_without_a_usable_gpu_it_stops_at_once_in_one_line(tmp_path: Path) -> None:
    # Hidden devices: here CuPy is missing anyway; on a GPU machine CuPy sees none.
    # (--skip all: should a GPU be found after all, the check ends at once, failing here.)
    out = tmp_path / "out"
    proc = run_script(str(out), "--skip", *gpu_check.PARTS, CUDA_VISIBLE_DEVICES="")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("gpu_check: no usable GPU: "), lines
    assert lines[0].endswith("; nothing was run (--cpu-only runs the rest)"), lines
    assert not out.exists()  # nothing started, nothing written


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batches", "0"], "--batches must be > 0, got 0"),
        (["--skip", "video"], "argument --skip: invalid choice: 'video'"),
        (["--wheels", "/nonexistent"], "--wheels /nonexistent is not a directory"),
    ],
)
def test_bad_flags_are_refused_before_any_work(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main([str(tmp_path / "out"), "--cpu-only", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "out").exists()


def outcome(nodeid: str, result: str, gpu: bool = False, reason: str = "") -> object:
    return gpu_check.Outcome(nodeid, result, "call", gpu, reason)


def judged(outcomes: list[object], gpu_required: bool, expected: bool = False) -> object:
    run = gpu_check.PartRun(["pytest"], "pytest.log", 100.0, 5.0, 0, False)
    return gpu_check.tests_check("t", run, outcomes, gpu_required, expected)


def test_a_gpu_test_that_skips_fails_the_gpu_check_only_on_a_gpu() -> None:
    ray = outcome("t::ray", "skipped", reason="needs ray (pongxp[ray]), which is not installed")
    passed_gpu = outcome("t::gpu_ok", "passed", gpu=True)
    marked = outcome("t::gpu_marked", "skipped", gpu=True, reason="some reason")
    unmarked = outcome("t::uses_cupy", "skipped", reason="CuPy is not installed")
    # A missing extra is an allowed skip; a GPU test that ran is what the GPU part wants.
    assert judged([ray, passed_gpu], gpu_required=True, expected=True).status == "passed"
    for skipped in (marked, unmarked):
        check = judged([passed_gpu, skipped], gpu_required=True)
        assert check.status == "failed" and "1 GPU test(s) skipped" in check.detail
        assert skipped.nodeid in check.detail
        assert judged([passed_gpu, skipped], gpu_required=False).status == "passed"  # --cpu-only
    no_gpu_ran = judged([ray], gpu_required=True, expected=True)
    assert no_gpu_ran.status == "failed" and "no GPU test ran" in no_gpu_ran.detail


def test_failures_errors_and_time_outs_fail_the_check() -> None:
    ok = outcome("t::a", "passed")
    for bad in ("failed", "error"):
        check = judged([ok, outcome("t::b", bad, reason="boom")], gpu_required=False)
        assert check.status == "failed" and "t::b (boom)" in check.detail
    late = gpu_check.PartRun(["pytest"], "pytest.log", 100.0, 100.0, -15, True)
    check = gpu_check.tests_check("t", late, [ok], False)
    assert check.status == "failed" and "time limit" in check.detail
    assert gpu_check.tests_check("t", None, [], False).status == "not run"


def test_outcomes_of_a_real_pytest_run_are_recorded_with_their_gpu_mark(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_ok():\n    pass\n"
        "def test_bad():\n    assert 1 == 2\n"
        "@pytest.mark.gpu\n"
        "@pytest.mark.skipif(True, reason='no CUDA device')\n"
        "def test_on_gpu():\n    pass\n"
    )
    (tmp_path / "test_extra.py").write_text(
        "import pytest\npytest.importorskip('not_a_module_at_all')\n"
    )
    jsonl = tmp_path / "outcomes.jsonl"
    args = ["-q", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestUnknownMarkWarning"]
    proc = run_script("--pytest-child", str(jsonl), *args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout  # one test failed
    got = {o.nodeid.split("::")[-1]: o for o in gpu_check.read_outcomes(jsonl)}
    assert set(got) == {"test_ok", "test_bad", "test_on_gpu", "test_extra.py"}
    assert (got["test_ok"].outcome, got["test_bad"].outcome) == ("passed", "failed")
    assert got["test_on_gpu"].outcome == "skipped" and got["test_on_gpu"].gpu
    assert got["test_on_gpu"].reason == "no CUDA device"
    assert got["test_extra.py"].outcome == "skipped" and not got["test_extra.py"].gpu
    assert "not_a_module_at_all" in got["test_extra.py"].reason
    assert not got["test_ok"].gpu


def test_a_module_that_cannot_be_imported_does_not_stop_the_gpu_tests(tmp_path: Path) -> None:
    # On the GPU machine one test module needed a package it lacked, and pytest
    # stopped at collection: no GPU test ran. Now that module is one error.
    (tmp_path / "test_needs_extra.py").write_text("import not_a_module_at_all\n")
    (tmp_path / "test_device.py").write_text(
        "import pytest\n@pytest.mark.gpu\ndef test_on_gpu():\n    pass\n"
    )
    jsonl = tmp_path / "outcomes.jsonl"
    cmd = gpu_check.pytest_command(jsonl, "gpu", [str(tmp_path)])
    cmd += ["-W", "ignore::pytest.PytestUnknownMarkWarning"]
    subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    got = {o.nodeid.split("::")[-1]: o for o in gpu_check.read_outcomes(jsonl)}
    assert got["test_on_gpu"].outcome == "passed" and got["test_on_gpu"].gpu
    assert got["test_needs_extra.py"].outcome == "error"
    check = gpu_check.tests_check("gpu tests", gpu_check.PartRun(cmd, "log", 60), [*got.values()],
                                  gpu_required=True, gpu_tests_expected=True)  # fmt: skip
    assert check.status == "failed" and "test_needs_extra.py" in check.detail


def test_cpu_only_training_part_times_every_update(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_script(
        str(out), "--cpu-only", "--skip", "gpu-tests", "bench", "tests",
        "--actors", "1", "--batch-size", "2", "--batches", "2", "--hidden", "16",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "train --device cpu: PASSED: 1 actor, 4 episodes" in proc.stdout
    record = json.loads((out / "gpu-check.json").read_text())
    assert [c["status"] for c in record["checks"]] == ["passed"]
    cpu = record["training"]["cpu"]
    logged = [json.loads(line) for line in (out / "train-cpu.jsonl").read_text().splitlines()]
    assert len(logged) == cpu["episodes"] == 4 and cpu["batches"] == 2
    assert cpu["steps"] == sum(r["steps"] for r in logged)
    assert all(s > 0 for s in cpu["update_s"]) and len(cpu["update_s"]) == 2
    # The weights come back to the host before batch 2 (not after the last update).
    assert cpu["weights_to_host_s"][0] > 0 and cpu["weights_to_host_s"][1] == 0
    assert 0 < cpu["update_share"] < 1 and 0 < cpu["steady_update_share"] < 1
    assert sorted(os.listdir(out)) == [
        "gpu-check.json", "gpu-check.md", "train-cpu.jsonl", "train.log",
    ]  # fmt: skip
    summary = (out / "gpu-check.md").read_text()
    assert "| train --device cpu | passed |" in summary and "| cpu | 1 | 2 | 4 |" in summary


def bench_row(device: str, frames: str, dtype: str, steps: int, ms: float) -> dict:
    return {"device": device, "frames": frames, "dtype": dtype, "steps": steps,
            "status": "ok", "update_s": ms / 1e3}  # fmt: skip


@pytest.mark.parametrize(("gpu_ms", "status"), [(9.0, "passed"), (11.0, "failed")])
def test_the_speedup_goal_is_the_gpu_sparse_float32_update_at_50k_steps(
    gpu_ms: float, status: str
) -> None:
    bench_update = gpu_check.bench_module("bench_update")
    rows = [
        bench_row("cpu", "sparse CSR", "float32", 50_000, 300.0),  # the best CPU row
        bench_row("cpu", "sparse CSR", "float64", 50_000, 500.0),
        bench_row("gpu", "sparse CSR", "float64", 50_000, 1.0),  # not training's dtype
        bench_row("gpu", "sparse CSR", "float32", 50_000, gpu_ms),
        {"device": "gpu", "frames": "dense", "dtype": "float64", "steps": 100_000,
         "status": "skipped: dense X alone is 5.1 GB (--gpu-dense-max-steps)"},
    ]  # fmt: skip
    bench_update.add_speedups(rows)
    run = gpu_check.PartRun(["bench"], "bench-update.log", 150.0, 60.0, 0, False)
    ran, goal = gpu_check.bench_checks(run, {"update": rows, "name": "update-gpu"}, gpu=True)
    assert ran.status == "passed"
    assert goal.status == status
    assert goal.detail.startswith(f"{300 / gpu_ms:.1f}x: GPU sparse float32 {gpu_ms:.1f} ms")
    rows.append({**rows[0], "device": "gpu", "steps": 1000, "status": "error: OutOfMemoryError"})
    ran, _ = gpu_check.bench_checks(run, {"update": rows, "name": "update-gpu"}, gpu=True)
    assert ran.status == "failed" and "OutOfMemoryError" in ran.detail


def test_gpu_training_is_compared_with_the_cpu_run() -> None:
    cpu = {"steps_per_s": 10_000.0, "update_per_batch_median_s": 0.2}
    gpu = {"steps_per_s": 12_500.0, "update_per_batch_median_s": 0.004}
    assert gpu_check.versus_cpu(gpu, cpu) == "vs CPU: 1.25x the steps/s, the update 50.0x as fast"
