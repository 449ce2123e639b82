"""Latency through pytest-benchmark: generated items, extra_info, compare, plot, xdist."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT

pytest.importorskip("pytest_benchmark")

MODEL_TEST = """
import pytest
from sample_models.torch_models import build

@pytest.mark.onnx_parity(batch_sizes=(1, 4))
def test_mlp(onnx_parity):
    model, example, options = build("mlp")
    assert onnx_parity(model, example, **options).passed
"""
FAST = ("--benchmark-max-time=0.05", "--benchmark-min-rounds=3", "-p", "no:cacheprovider")


def test_benchmark_items_json_extra_info_and_plot(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_latency=MODEL_TEST)
    result = pytester.runpytest(
        "--onnx-benchmark", "--benchmark-json=bench.json", "--onnx-benchmark-plot=plots/latency.png", "-v", *FAST
    )
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*test_mlp?cpu? PASSED*",
            "*test_mlp?bench-framework-b1? PASSED*",
            "*test_mlp?bench-cpu-b1? PASSED*",
            "*test_mlp?bench-framework-b4? PASSED*",
            "*test_mlp?bench-cpu-b4? PASSED*",
            "*ONNX latency (median; speedup over the framework)*",
            "test_latency.py::test_mlp batch=1: torch * ms, cpu * ms (*x)",
        ]
    )
    benchmarks = {b["name"]: b for b in json.loads((pytester.path / "bench.json").read_text())["benchmarks"]}
    assert set(benchmarks) == {f"test_mlp[bench-{r}-b{b}]" for r in ("framework", "cpu") for b in (1, 4)}
    cpu = benchmarks["test_mlp[bench-cpu-b4]"]
    assert cpu["group"] == "test_latency.py::test_mlp batch=4"
    info = cpu["extra_info"]
    assert info["runtime"] == "cpu" and info["batch_size"] == 4 and info["provider"] == "CPUExecutionProvider"
    assert info["threads"] == info["session_options"]["intra_op_num_threads"] >= 1
    assert info["session_options"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert info["session_options"]["idle_threads_spin"] is True  # timed as users deploy: ONNX Runtime's default
    assert info["speedup_vs_framework"] > 0 and info["opset"] and "onnxruntime" in info["versions"]
    assert benchmarks["test_mlp[bench-framework-b1]"]["extra_info"]["runtime"] == "torch"
    assert (pytester.path / "plots" / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_marker_enables_benchmark_and_compare_runs_on_a_saved_result(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_latency=MODEL_TEST.replace("batch_sizes=(1, 4)", "benchmark=True, benchmark_batch_sizes=(2,)")
    )
    first = pytester.runpytest("--benchmark-save=base", "--benchmark-storage=store", *FAST)
    first.assert_outcomes(passed=3)
    second = pytester.runpytest(
        "--benchmark-compare=0001", "--benchmark-compare-fail=mean:100000%", "--benchmark-storage=store", *FAST
    )
    second.assert_outcomes(passed=3)
    table = second.stdout.str()  # rows are sorted by speed, so their order varies
    assert "test_mlp[bench-cpu-b2] (NOW)" in table and "test_mlp[bench-cpu-b2] (0001_base)" in table


def test_benchmark_is_skipped_under_xdist_with_one_warning(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_latency=MODEL_TEST)
    result = pytester.runpytest_subprocess("--onnx-benchmark", "-n", "2", *FAST)
    result.assert_outcomes(passed=1)
    assert result.stdout.str().count("--onnx-benchmark is ignored under pytest-xdist") == 1


def test_an_onnx_file_is_benchmarked_without_importing_a_framework(pytester: pytest.Pytester, exported) -> None:
    pytester.makepyfile(
        f"""
        import sys
        import numpy as np
        import pytest

        @pytest.mark.onnx_parity(benchmark=True, benchmark_batch_sizes=(1,))
        def test_artifact(onnx_parity):
            onnx_parity(r"{exported("cnn")}", np.zeros((2, 3, 32, 32), np.float32))
            assert "tensorflow" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess(*FAST)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*OnnxParityWarning*the reference and the target are the same runtime*"])
