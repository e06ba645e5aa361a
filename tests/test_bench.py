"""The benchmark scripts refuse bad flags in one line, before any measuring."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest
from conftest import ROOT


def bench_script(name: str) -> ModuleType:
    """Import ``bench/NAME.py`` (bench/ is not a package; its scripts import ``machine``)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "bench"))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--batches", "1"), "--batches must be an integer >= 2 (training's CPU time per step "
                             "is the difference of a 1-batch run and a --batches run), got 1"),
        (("--num-envs", "1", "0"), "--num-envs must be a positive integer, got 0"),
        (("--bare-seconds", "nan"), "--bare-seconds must be a finite number > 0, got nan"),
    ],
)  # fmt: skip
def test_throughput_bench_refuses_bad_numbers(
    flags: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = bench_script("bench_throughput")
    with pytest.raises(SystemExit) as exit_info:
        bench.main(list(flags))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {message}")
