"""Real execution providers on a CPU-only machine: ONNX Runtime's CPU provider and OpenVINO (plugin EP)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import failure_text

pytest.importorskip("onnxruntime_ep_openvino", reason="needs onnxruntime-ep-openvino (the openvino extra)")

DET_MODELS = """
import torch

class Covariance(torch.nn.Module):
    '''A projection then a log-determinant: OpenVINO takes the MatMul/Relu, not Det.'''
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(6, 4)
    def forward(self, x):
        m = torch.relu(self.proj(x)).reshape(-1, 2, 2) + torch.eye(2)
        return torch.linalg.det(m)

class OnlyDet(torch.nn.Module):
    def forward(self, x):
        return torch.linalg.det(x)
"""


def test_cpu_and_openvino_matrix_on_real_models(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from sample_models.torch_models import build

        @pytest.mark.parametrize("name", ["cnn", "bert"])
        def test_model(onnx_parity, name):
            model, example, options = build(name)
            report = onnx_parity(model, example, **options)
            assert report.passed
        """
    )
    result = pytester.runpytest("--onnx-providers=cpu,openvino", "--onnx-report=r.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_model?openvino-bert?*openvino*PASS*"])
    checks = {c["nodeid"].split("::")[1]: c for c in json.loads((pytester.path / "r.json").read_text())["checks"]}
    assert set(checks) == {
        "test_model[cpu-cnn]",
        "test_model[cpu-bert]",
        "test_model[openvino-cnn]",
        "test_model[openvino-bert]",
    }
    ov = checks["test_model[openvino-bert]"]
    assert ov["executed_providers"][0] == "OpenVINOExecutionProvider" and ov["node_placement"]["openvino"] >= 1
    assert ov["versus_cpu"] and all(o["total"] > 0 for o in ov["versus_cpu"])
    assert checks["test_model[cpu-cnn]"]["executed_providers"] == ["CPUExecutionProvider"]


def test_nodes_openvino_leaves_to_cpu_are_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        DET_MODELS
        + """
def test_covariance(onnx_parity):
    report = onnx_parity(Covariance().eval(), torch.randn(2, 6))
    assert report.passed and report.fallback_nodes == {"Det": 1}
    assert report.node_placement["openvino"] >= 1 and report.node_placement["cpu"] == 1
"""
    )
    relaxed = pytester.runpytest("--onnx-providers=openvino", "-p", "no:cacheprovider")
    relaxed.assert_outcomes(passed=1, warnings=1)
    relaxed.stdout.fnmatch_lines(["*OnnxParityWarning*1 node(s) fell back to CPU: Det x1*"])
    strict = pytester.runpytest("--onnx-providers=openvino", "--onnx-strict", "-p", "no:cacheprovider")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*--onnx-strict*", "*fell back to CPU: Det x1*"])


def test_a_provider_that_executes_nothing_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        DET_MODELS
        + """
def test_only_det(onnx_parity):
    onnx_parity(OnlyDet().eval(), torch.randn(3, 2, 2) + 2 * torch.eye(2))
"""
    )
    reprec = pytester.inline_run("--onnx-providers=openvino", "-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    assert "OpenVINOExecutionProvider executed none of the graph's" in text and "Det x1" in text, text


def test_provider_options_are_passed_and_recorded(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        DET_MODELS + "\ndef test_cov(onnx_parity):\n    onnx_parity(Covariance().eval(), torch.randn(2, 6))\n"
    )
    result = pytester.runpytest(
        "--onnx-providers=cpu,openvino",
        "--onnx-provider-options=openvino:num_of_threads=1",
        "--onnx-provider-options=openvino:cache_dir=ov_cache",
        "--onnx-report=r.json",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=2, warnings=1)
    checks = {c["provider"]: c for c in json.loads((pytester.path / "r.json").read_text())["checks"]}
    assert checks["openvino"]["provider_options"] == {"num_of_threads": "1", "cache_dir": "ov_cache"}
    assert checks["cpu"]["provider_options"] == {}


def test_marker_overrides_tolerance_per_provider(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        DET_MODELS
        + """
import pytest

@pytest.mark.onnx_parity(provider_tolerances={"openvino": {"atol": 0.5, "rtol": 0.05}})
def test_cov(onnx_parity, onnx_parity_provider):
    report = onnx_parity(Covariance().eval(), torch.randn(2, 6))
    expected = (0.5, 0.05) if onnx_parity_provider == "openvino" else (1e-5, 1e-4)
    assert (report.outputs[0].atol, report.outputs[0].rtol) == expected
"""
    )
    pytester.runpytest("--onnx-providers=cpu,openvino", "-p", "no:cacheprovider").assert_outcomes(passed=2, warnings=1)


def test_reduced_precision_providers_default_to_looser_tolerances() -> None:
    from pytest_onnxparity.check import _tolerances
    from pytest_onnxparity.settings import Settings

    assert _tolerances(Settings(), "tensorrt") == (1e-3, 1e-2)
    assert _tolerances(Settings(), "cpu") == (None, None)  # dtype defaults apply
    assert _tolerances(Settings(atol=1e-4), "tensorrt") == (1e-4, 1e-2)


def test_an_onnx_file_alone_is_checked_against_the_cpu_provider(pytester: pytest.Pytester, exported) -> None:
    path = exported("cnn")
    pytester.makepyfile(
        f"""
        import numpy as np

        def test_artifact(onnx_parity, onnx_parity_provider):
            report = onnx_parity(r"{path}", np.random.default_rng(0).standard_normal((2, 3, 32, 32), np.float32))
            assert report.passed and report.framework == "onnxruntime-cpu" and report.examples > 20
            if onnx_parity_provider == "openvino":
                assert report.executed_providers[0] == "OpenVINOExecutionProvider" and not report.warnings

        def test_wrong_arity(onnx_parity):
            onnx_parity(r"{path}", (np.zeros((2, 3, 32, 32), np.float32), np.zeros(2, np.float32)))
        """
    )
    reprec = pytester.inline_run("--onnx-providers=cpu,openvino", "-p", "no:cacheprovider", "-W", "ignore")
    reprec.assertoutcome(passed=2, failed=2)
    texts = failure_text(reprec)
    assert all(
        "the ONNX graph takes 1 input(s) ['image'] but 2 example input(s) were given" in t for t in texts.values()
    )
    cpu_report = [
        r for r in reprec.getreports("pytest_runtest_logreport") if r.when == "call" and "artifact[cpu]" in r.nodeid
    ]
    assert "compared with itself on the CPU provider" in str(cpu_report[0].onnx_parity[0]["warnings"])
