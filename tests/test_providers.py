"""Execution providers: the matrix, skips and their reasons, placement and fallback, precision, logs.

The provider logic runs against a stand-in (``tests/standin.py``: ONNX Runtime's CPU provider under
another name) so it is tested on every machine; ``test_real_openvino`` exercises OpenVINO itself where
this machine can run it.
"""

from __future__ import annotations

import json

import pytest

from pytest_onnxparity.providers import registry as providers
from tests.conftest import failure_text, parity_warnings

DET_MODELS = """
import torch

class Covariance(torch.nn.Module):
    '''A projection then a determinant: the stand-in (like OpenVINO) declines Det.'''
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


def _conftest(pytester: pytest.Pytester, *definitions: str) -> None:
    pytester.makeconftest(
        f"""
        from pytest_onnxparity.providers.registry import Unavailable
        from tests.standin import standin

        def pytest_onnxparity_providers():
            return [{", ".join(definitions)}]
        """
    )


def test_provider_matrix_placement_and_cpu_comparison(pytester: pytest.Pytester) -> None:
    _conftest(pytester, "standin()")
    pytester.makepyfile(
        """
        import pytest
        from sample_models.torch_models import build

        @pytest.mark.parametrize("name", ["cnn", "bert"])
        def test_model(onnx_parity, name):
            model, example, options = build(name)
            assert onnx_parity(model, example, **options).passed
        """
    )
    result = pytester.runpytest("--onnx-providers=cpu,standin", "--onnx-report=r.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_model?standin-bert?*standin*PASS*"])
    checks = {c["nodeid"].split("::")[1]: c for c in json.loads((pytester.path / "r.json").read_text())["checks"]}
    assert set(checks) == {f"test_model[{p}-{m}]" for p in ("cpu", "standin") for m in ("cnn", "bert")}
    stand = checks["test_model[standin-bert]"]
    assert stand["node_placement"]["standin"] >= 1 and stand["precision"].startswith("f32")
    assert stand["versus_cpu"] and all(o["total"] > 0 for o in stand["versus_cpu"])
    assert checks["test_model[cpu-cnn]"]["executed_providers"] == ["CPUExecutionProvider"]


def test_nodes_a_provider_declines_are_reported_and_fail_under_strict(pytester: pytest.Pytester) -> None:
    _conftest(pytester, "standin(declines=('Det',))")
    pytester.makepyfile(
        DET_MODELS
        + """
def test_covariance(onnx_parity):
    report = onnx_parity(Covariance().eval(), torch.randn(2, 6))
    assert report.passed and report.fallback_nodes == {"Det": 1}
    assert report.node_placement["standin"] >= 1 and report.node_placement["cpu"] == 1
"""
    )
    relaxed = pytester.inline_run("--onnx-providers=standin", "-p", "no:cacheprovider")
    relaxed.assertoutcome(passed=1)
    assert any("1 node(s) fell back to CPU: Det x1" in w for w in parity_warnings(relaxed))
    strict = pytester.runpytest("--onnx-providers=standin", "--onnx-strict", "-p", "no:cacheprovider")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*--onnx-strict*", "*fell back to CPU: Det x1*"])


def test_a_provider_that_executes_nothing_fails(pytester: pytest.Pytester) -> None:
    _conftest(pytester, "standin(declines=('Det',))")
    pytester.makepyfile(
        DET_MODELS
        + "\ndef test_only_det(onnx_parity):\n"
        + "    onnx_parity(OnlyDet().eval(), torch.randn(3, 2, 2) + 2 * torch.eye(2))\n"
    )
    reprec = pytester.inline_run("--onnx-providers=standin", "-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    assert "executed none of the graph's" in text and "Det x1" in text, text


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("not-installed", "not installed: pip install standin-ep"),
        ("no-device", "installed but offers no device on this machine (it looked for an Intel GPU)"),
        ("load-failure", "installed but its library failed to load: libstandin.so: cannot open shared object file"),
    ],
)
def test_a_missing_provider_skips_with_its_reason_or_fails_when_required(
    pytester: pytest.Pytester, kind: str, message: str
) -> None:
    _conftest(pytester, f"standin(unavailable=Unavailable({kind!r}, {message!r}))")
    pytester.makepyfile(
        "import torch\n\ndef test_x(onnx_parity):\n    onnx_parity(torch.nn.Linear(3, 2), torch.zeros(2, 3))\n"
    )
    skipped = pytester.runpytest("--onnx-providers=cpu,standin", "-rs", "-p", "no:cacheprovider")
    skipped.assert_outcomes(passed=1, skipped=1)
    skipped.stdout.fnmatch_lines([f"SKIPPED*{message}*"])
    required = pytester.runpytest("--onnx-providers=standin", "--onnx-require-providers", "-p", "no:cacheprovider")
    required.assert_outcomes(failed=1)
    required.stdout.fnmatch_lines([f"*{message}*--onnx-require-providers turns this skip into a failure*"])


def test_provider_reasons_read_from_onnx_runtime() -> None:
    """The reasons behind a real provider's absence: this ONNX Runtime's list and its own log lines."""
    missing = providers.unavailable("cuda")
    assert missing is not None and missing.kind == "not-installed" and "pip install onnxruntime-gpu" in missing.message
    load = providers.diagnose_fallback(
        "cuda",
        "[E:onnxruntime:Default, provider_bridge_ort.cc:2036 TryGetProviderInfo_CUDA] Failed to load library "
        "libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object file",
    )
    assert load is not None and load.kind == "load-failure" and "libcublasLt.so.12" in load.message
    device = providers.diagnose_fallback("cuda", "CUDA failure 100: no CUDA-capable device is detected ; GPU=0")
    assert device is not None and device.kind == "no-device"
    assert providers.diagnose_fallback("cuda", "[W:onnxruntime:] Invalid option: foo") is None  # a real failure


def test_reduced_precision_is_stated_and_the_conversion_still_judged_at_float32(pytester: pytest.Pytester) -> None:
    _conftest(pytester, "standin(precision='bf16')")
    pytester.makepyfile(
        """
        import copy, torch
        from sample_models.torch_models import build
        from tests.models import export_file

        def test_healthy(onnx_parity, request):
            model, example, options = build("mlp")
            report = onnx_parity(model, example, **options)
            assert report.outputs[0].atol == 1e-6   # the conversion's verdict: float32's, whatever the provider
            if request.config.getoption("onnx_parity_provider_options"):   # forced to f32: an exact check
                assert report.precision.startswith("f32") and not report.tolerance_reason
                assert report.versus_cpu[0].atol == 1e-6
            else:
                assert report.precision.startswith("bf16") and "runs in bf16" in report.tolerance_reason
                assert report.versus_cpu[0].atol == 2**-7 and "precision=f32" in report.precision

        def test_changed_weight(onnx_parity, tmp_path):
            model, example, options = build("mlp")
            broken = copy.deepcopy(model)
            with torch.no_grad():
                broken.net[0].weight.mul_(1.2)            # a real defect: one weight matrix off by 20%
            onnx_parity(model, example, onnx_model=export_file(broken, example, tmp_path / "broken.onnx"))
        """
    )
    reduced = pytester.inline_run("--onnx-providers=standin", "-p", "no:cacheprovider")
    reduced.assertoutcome(passed=1, failed=1)
    (text,) = failure_text(reduced).values()
    assert "the provider's verdict: standin runs in bf16" in text
    assert "conversion: values:" in text  # the conversion, not the provider
    exact = pytester.inline_run(
        "--onnx-providers=standin", "--onnx-provider-options=standin:precision=f32", "-p", "no:cacheprovider"
    )
    exact.assertoutcome(passed=1, failed=1)
    (text,) = failure_text(exact).values()
    assert "conversion: values:" in text and "tolerance:" not in text


def test_a_provider_failure_is_the_providers_verdict(pytester: pytest.Pytester, exported) -> None:
    import onnx

    path = exported("mlp")
    middle = next(n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("Gemm", "MatMul"))
    _conftest(pytester, f"standin(corrupt={middle!r})")
    pytester.makepyfile(
        f"""
        import numpy as np

        def test_artifact(onnx_parity):
            onnx_parity(r"{path}", np.random.default_rng(0).standard_normal((2, 784), np.float32))
        """
    )
    reprec = pytester.inline_run("--onnx-providers=standin", "--onnx-report=r.json", "-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    assert "provider: values: the provider's result differs from ONNX Runtime's CPU provider" in text, text
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert check["failure"]["verdict"] == "provider" and check["conversion_margin"] <= 1


def test_provider_logs_reach_the_report_not_stderr(pytester: pytest.Pytester, exported) -> None:
    _conftest(pytester, "standin(logs='Provider option precision is ignored. Please set it via load_config')")
    pytester.makepyfile(
        f"""
        import numpy as np

        def test_logged(onnx_parity, capfd):
            report = onnx_parity(r"{exported("mlp")}", np.zeros((2, 784), np.float32))
            assert any("Provider option precision is ignored" in line for line in report.provider_log)
            assert any("did not apply a setting" in w and "precision is ignored" in w for w in report.warnings)
            assert "precision is ignored" not in capfd.readouterr().err
        """
    )
    pytester.inline_run("--onnx-providers=standin", "-p", "no:cacheprovider").assertoutcome(passed=1)


def test_onnx_runtime_session_warnings_are_captured_and_idle_threads_do_not_spin(tmp_path) -> None:
    """ONNX Runtime's own warning at session creation (an unused initializer) lands in the runner's log."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from pytest_onnxparity.runners.onnxruntime import OrtRunner

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.ones(2, np.float32), "unused")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), tmp_path / "m.onnx")
    runner = OrtRunner(str(tmp_path / "m.onnx"))
    assert any("unused" in line for line in runner.log), runner.log
    # A check's sessions do not spin idle threads: they would take the cores the framework's next run needs.
    assert runner.session_options()["idle_threads_spin"] is False
    assert OrtRunner(str(tmp_path / "m.onnx"), spinning=True).session_options()["idle_threads_spin"] is True


def _openvino_reason() -> str | None:
    try:
        missing = providers.unavailable("openvino")
    except Exception as exc:  # pragma: no cover - reported as the skip reason
        return f"{type(exc).__name__}: {exc}"
    return missing.message if missing else None


@pytest.mark.skipif(_openvino_reason() is not None, reason=f"real OpenVINO not usable here: {_openvino_reason()}")
def test_real_openvino(pytester: pytest.Pytester) -> None:
    """OpenVINO itself (onnxruntime-openvino or onnxruntime-ep-openvino): it runs nodes, states its precision."""
    pytester.makepyfile(
        """
        from sample_models.torch_models import build

        def test_cnn(onnx_parity):
            model, example, options = build("cnn")
            assert onnx_parity(model, example, **options).passed
        """
    )
    result = pytester.runpytest("--onnx-providers=openvino", "--onnx-report=r.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert check["executed_providers"][0] == "OpenVINOExecutionProvider" and check["node_placement"]["openvino"] >= 1
    assert check["precision"].split()[0] in ("f32", "bf16", "f16")
    if check["precision"].startswith("bf16"):
        assert "runs in bf16" in check["tolerance_reason"] and "rounded to bf16" in check["provider_allowance"]
