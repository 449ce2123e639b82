"""Two verdicts per provider item: the conversion (ONNX Runtime's CPU provider against the model, by the float32
rule, whatever the provider) and the provider (against the CPU provider, within what its precision was measured to
explain). The stand-ins compute in bf16, f16 and TF32 on any CPU (``tests/standin.py``), so these run everywhere.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import onnx
import pytest

from tests.conftest import failure_text
from tests.defects import last_weight_scaled

#: Healthy models whose reduced-precision results are far off on ill-conditioned inputs: Linear + Tanh at the x1e3
#: edge case (a small difference of ~1e3-sized terms), a small CNN.
HEALTHY = """
import pytest, torch
from sample_models.torch_models import build

@pytest.mark.parametrize("width", [4, 8, 12])
def test_linear_tanh(onnx_parity, width):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, width), torch.nn.Tanh()).eval()
    report = onnx_parity(model, torch.zeros(3, 6))
    assert report.versus_cpu and report.provider_margin <= 1.0

def test_cnn(onnx_parity):
    model, example, options = build("cnn")
    onnx_parity(model, example, **options)
"""


def _standin(pytester: pytest.Pytester, definition: str) -> None:
    pytester.makeconftest(
        f"""
        from tests.standin import standin

        def pytest_onnxparity_providers():
            return [{definition}]
        """
    )


@pytest.mark.parametrize("precision", ["bf16", "f16", "tf32"])
def test_healthy_ill_conditioned_models_pass_a_reduced_precision_provider(
    pytester: pytest.Pytester, precision: str
) -> None:
    _standin(pytester, f"standin(precision={precision!r})")
    pytester.makepyfile(HEALTHY)
    reprec = pytester.inline_run("--onnx-providers=standin", "--onnx-report=r.json", "-p", "no:cacheprovider")
    assert not failure_text(reprec), failure_text(reprec)
    reprec.assertoutcome(passed=4)
    for check in json.loads((pytester.path / "r.json").read_text())["checks"]:
        assert check["precision"].startswith(precision)
        assert f"rounded to {precision}" in check["provider_allowance"]
        assert check["outputs"][0]["atol"] == 1e-6  # the conversion keeps float32's tolerance


@pytest.mark.parametrize("factor", [1.02, 1.002])
def test_a_conversion_defect_fails_a_bf16_provider_only_run_as_conversion(
    pytester: pytest.Pytester, plant, factor: float
) -> None:
    """Held against the model at bf16's tolerance, a last layer 0.2% off passed; the conversion is judged on the
    CPU provider at float32 whatever the provider computes in, with no [cpu] item in the run."""
    path = plant("mlp", lambda model: last_weight_scaled(model, factor))
    _standin(pytester, "standin(precision='bf16')")
    pytester.makepyfile(
        f"""
        from sample_models.torch_models import build

        def test_artifact(onnx_parity):
            model, example, options = build("mlp")
            onnx_parity(model, example, onnx_model=r"{path}")
        """
    )
    reprec = pytester.inline_run("--onnx-providers=standin", "--onnx-report=r.json", "-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    assert "conversion: values: output" in text, text
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert check["failure"]["verdict"] == "conversion" and check["conversion_margin"] > 1


def test_a_provider_broken_beyond_its_precision_fails_as_provider(pytester: pytest.Pytester, exported) -> None:
    """A bf16 provider whose first MatMul/Gemm comes out 25% off: far beyond bf16's rounding, while the conversion
    is faithful."""
    path = exported("mlp")
    first = next(n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("Gemm", "MatMul"))
    _standin(pytester, f"standin(precision='bf16', corrupt={first!r}, corrupt_by=1.25)")
    pytester.makepyfile(
        """
        from sample_models.torch_models import build

        def test_model(onnx_parity):
            model, example, options = build("mlp")
            onnx_parity(model, example, **options)
        """
    )
    reprec = pytester.inline_run("--onnx-providers=cpu,standin", "--onnx-report=r.json", "-p", "no:cacheprovider")
    reprec.assertoutcome(passed=1, failed=1)
    (text,) = failure_text(reprec).values()
    assert "provider: values: the provider's result differs from ONNX Runtime's CPU provider" in text, text
    checks = {c["provider"]: c for c in json.loads((pytester.path / "r.json").read_text())["checks"]}
    assert checks["standin"]["failure"]["verdict"] == "provider" and checks["standin"]["provider_margin"] > 1
    assert checks["standin"]["conversion_margin"] <= 1 and checks["cpu"]["provider_margin"] is None


def test_both_margins_reach_the_summary_json_and_junit(pytester: pytest.Pytester) -> None:
    """A user's atol/rtol judge the conversion; the bf16 provider keeps its own allowance (the marker's atol=1e-5
    used to be applied to the bf16 provider's whole output and fail it)."""
    _standin(pytester, "standin(precision='bf16')")
    pytester.makepyfile(
        """
        import pytest
        from sample_models.torch_models import build

        @pytest.mark.onnx_parity(atol=1e-5, rtol=1e-4)
        def test_classifier(onnx_parity):
            model, example, _ = build("mlp")
            report = onnx_parity(model, example)
            assert report.outputs[0].atol == 1e-5 and report.versus_cpu[0].atol == 2**-7
            text = report.text()
            assert "margins: conversion " in text and "of the provider's allowance used" in text
        """
    )
    result = pytester.runpytest(
        "--onnx-providers=standin", "--onnx-report=r.json", "--junitxml=j.xml", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test*provider*reach*margin*provider margin*", "*standin*PASS *%*%"])
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert 0 < check["conversion_margin"] <= 1 and 0 < check["provider_margin"] <= 1
    props = {p.get("name"): p.get("value") for p in ET.parse(pytester.path / "j.xml").iter("property")}
    assert float(props["onnx_parity.conversion_margin"]) == pytest.approx(check["conversion_margin"])
    assert float(props["onnx_parity.provider_margin"]) == pytest.approx(check["provider_margin"])


@pytest.mark.parametrize(("precision", "low_bits"), [("bf16", 16), ("f16", 13), ("tf32", 13)])
def test_the_emulated_graph_rounds_every_value_to_the_precision(tmp_path, precision: str, low_bits: int) -> None:
    """What the provider's allowance is measured with: inputs, weights and each node's output rounded (the mantissa
    bits the precision lacks are zero in every output), and ONNX Runtime does not fold the rounding away."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from pytest_onnxparity.runners.emulation import Emulation
    from pytest_onnxparity.runners.onnxruntime import OrtRunner

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((6, 5)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Tanh", ["h"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5]),
            helper.make_tensor_value_info("h", 1, None),
        ],
        [weight],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    x = (rng.standard_normal((4, 6)) * 3).astype(np.float32)
    emulation = Emulation(str(path), precision, {"x": "x"})
    for value in emulation.run({"x": x}).values():
        assert not (value.view(np.uint32) & np.uint32((1 << low_bits) - 1)).any()
    exact = OrtRunner(str(path)).infer({"x": x})
    gap = emulation.deviation({"x": x}, exact)
    unit = 2.0 ** -(24 - low_bits)
    assert 0 < gap["h"].max() <= 8 * unit * np.abs(x).max() * np.abs(numpy_helper.to_array(weight)).sum(0).max()
