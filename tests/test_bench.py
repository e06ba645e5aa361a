"""The benchmark scripts refuse bad flags in one line, before any measuring; the
scaling model's parts (bench_scaling.py) on small known cases."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import ROOT


def bench_script(name: str) -> ModuleType:
    """Import ``bench/NAME.py`` (bench/ is not a package; its scripts import ``machine``)."""
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
    bench = bench_script("bench_scaling")
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
    bench = bench_script("bench_scaling")
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
