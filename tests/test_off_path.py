"""Off the beaten path: inputs holding NaN/Inf, masks with holes, sequences past 512, and a reference noise
estimate that a float64 path computing something else cannot inflate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.conftest import failure_text, parity_warnings
from tests.defects import corrupt_from, table_truncated, weight_off


def _export(model_name: str, example: dict[str, object], path: Path, axes: dict[str, dict[int, str]]) -> str:
    """A tests.models model exported by the dynamo exporter with ``axes`` dynamic (the artifact a user ships)."""
    import torch

    from tests import models

    dims = {name: {axis: torch.export.Dim(dim, min=1) for axis, dim in per.items()} for name, per in axes.items()}
    model = getattr(models, model_name)().eval()
    torch.onnx.export(
        model,
        tuple(example.values()),
        str(path),
        dynamo=True,
        input_names=list(example),
        output_names=["output"],
        dynamic_shapes=tuple(dims[name] for name in example),
    )
    return str(path)


NAN_CHECKS = """
import torch
from tests.models import SensorMax

def test_default(onnx_parity):
    report = onnx_parity(SensorMax().eval(), torch.randn(2, 6, 4), examples=3)
    assert report.passed and any("part ways" in w for w in report.warnings)

def test_asked(onnx_parity):
    onnx_parity(SensorMax().eval(), torch.randn(2, 6, 4), examples=3, edge_cases={"nonfinite": True})

def test_off(onnx_parity):
    report = onnx_parity(SensorMax().eval(), torch.randn(2, 6, 4), examples=3, edge_cases={"nonfinite": False})
    assert report.passed and not any("NaN" in w for w in report.warnings)
"""


def test_a_nan_dropping_reduction_warns_naming_the_node_and_fails_when_asked_or_strict(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(NAN_CHECKS)
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=2, failed=1)
    (warning,) = [w for w in parity_warnings(reprec) if "part ways" in w]
    assert "output 'output' differs only on inputs holding NaN/Inf" in warning, warning
    assert "NaN dropped" in warning and "(ReduceMax)" in warning and "ONNX node" in warning, warning
    (text,) = failure_text(reprec).values()
    assert "nonfinite: output 'output': non-finite values differ" in text and "NaN" in text, text
    strict = pytester.runpytest("--onnx-strict", "-p", "no:cacheprovider", "-k", "default")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*--onnx-strict*passed with warnings*", "*NaN dropped*(ReduceMax)*"])


HOLES_CHECK = """
import torch
from tests.models import MaskedMean

EXAMPLE = (torch.randn(2, 9, 4), torch.ones(2, 9, dtype=torch.int64))
AXES = {{"x": {{0: "batch", 1: "seq"}}, "mask": {{0: "batch", 1: "seq"}}}}

def test_default(onnx_parity):
    onnx_parity(MaskedMean().eval(), EXAMPLE, onnx_model=r"{path}", dynamic_axes=AXES)

def test_padding_only(onnx_parity):
    onnx_parity(MaskedMean().eval(), EXAMPLE, onnx_model=r"{path}", dynamic_axes=AXES, mask_holes=False)

def test_healthy(onnx_parity):
    onnx_parity(MaskedMean().eval(), EXAMPLE, onnx_model=r"{healthy}", dynamic_axes=AXES)
"""


def test_a_mask_handled_for_padding_but_not_for_holes_is_caught_by_default(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    import torch

    example = {"x": torch.randn(2, 9, 4), "mask": torch.ones(2, 9, dtype=torch.int64)}
    axes = {"x": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}}
    broken = _export("SpanMean", example, tmp_path / "span.onnx", axes)
    healthy = _export("MaskedMean", example, tmp_path / "masked.onnx", axes)
    pytester.makepyfile(HOLES_CHECK.format(path=broken, healthy=healthy))
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=2, failed=1)
    ((nodeid, text),) = failure_text(reprec).items()
    assert "test_default" in nodeid and "values: output 'output'" in text, text


SEQUENCE_CHECK = """
import torch
from tests.models import {model}

def test_sequence(onnx_parity):
    report = onnx_parity({model}().eval(), torch.randn(2, 12, 4), onnx_model=r"{path}",
                         dynamic_axes={{"frames": {{0: "batch", 1: "seq"}}}}, examples=3)
    print("REACH", report.reach["seq"])
"""


def test_a_sinusoidal_table_cut_at_512_in_the_graph_is_caught_past_512(pytester: pytest.Pytester, tmp_path) -> None:
    import torch

    example = {"frames": torch.randn(2, 12, 4)}
    healthy = _export("SinusoidalScorer", example, tmp_path / "healthy.onnx", {"frames": {0: "batch", 1: "seq"}})
    planted = tmp_path / "planted.onnx"
    onnx.save(table_truncated(onnx.load(healthy), "pe", 512), str(planted))
    pytester.makepyfile(SEQUENCE_CHECK.format(model="SinusoidalScorer", path=planted))
    reprec = pytester.inline_run("-p", "no:cacheprovider", "--onnx-report=r.json")
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    assert "ONNX Runtime failed on an input the torch model accepts" in text, text
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert check["failure"]["recipe"]["dims"]["seq"] > 512
    pytester.makepyfile(SEQUENCE_CHECK.format(model="SinusoidalScorer", path=healthy))
    result = pytester.runpytest("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*REACH *'largest': 1024*'bound': 'a position buffer or length attribute*(1024)'*"])


def test_an_axis_with_no_known_limit_is_walked_past_512_until_the_budget(pytester: pytest.Pytester, tmp_path) -> None:
    import torch

    example = {"frames": torch.randn(2, 12, 4)}
    healthy = _export("FrameScorer", example, tmp_path / "healthy.onnx", {"frames": {0: "batch", 1: "seq"}})
    planted = tmp_path / "planted.onnx"
    onnx.save(corrupt_from(onnx.load(healthy), start=700, axis=1), str(planted))
    pytester.makepyfile(SEQUENCE_CHECK.format(model="FrameScorer", path=planted))
    reprec = pytester.inline_run("-p", "no:cacheprovider", "--onnx-report=r.json")
    reprec.assertoutcome(failed=1)
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert check["failure"]["recipe"]["dims"]["seq"] > 700
    pytester.makepyfile(SEQUENCE_CHECK.format(model="FrameScorer", path=healthy))
    result = pytester.runpytest("-p", "no:cacheprovider", "-s", "--onnx-report=r.json")
    result.assert_outcomes(passed=1)
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    seq = check["reach"]["seq"]
    assert seq["largest"] > 2048 and ("budget" in seq["bound"]), seq
    result.stdout.fnmatch_lines([f"*seq<={seq['largest']} (*)*"])


NOISE_CHECK = """
import torch
from tests.models import DtypeBranch

def test_noise(onnx_parity):
    onnx_parity(DtypeBranch().eval(), torch.randn(2, 6), onnx_model=r"{path}")
"""


def test_a_float64_path_computing_something_else_cannot_hide_a_defect(pytester: pytest.Pytester, tmp_path) -> None:
    import torch

    healthy = _export("DtypeBranch", {"x": torch.randn(2, 6)}, tmp_path / "healthy.onnx", {"x": {0: "batch"}})
    planted = tmp_path / "planted.onnx"
    onnx.save(weight_off(onnx.load(healthy), 0.01), str(planted))
    pytester.makepyfile(NOISE_CHECK.format(path=planted))
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    assert "values: output 'output'" in text, text
    pytester.makepyfile(NOISE_CHECK.format(path=healthy))
    healthy_run = pytester.inline_run("-p", "no:cacheprovider")
    healthy_run.assertoutcome(passed=1)


def test_noise_is_credited_only_where_both_estimates_look_like_rounding() -> None:
    from pytest_onnxparity.engine.context import implausible

    base = np.linspace(-1.0, 1.0, 50)
    eps = float(np.finfo(np.float32).eps)
    ill = np.full(50, 3e-3)  # an ill-conditioned input: both estimates move the output alike
    assert implausible({"float64": ill, "nudge": 0.5 * ill}, base) is None
    why = implausible({"the float64 run": np.abs(base), "the nudged run": np.full(50, eps)}, base)
    assert why is not None and why.startswith("the float64 run moves it by"), why
    assert implausible({"the float64 run": np.full(50, 10 * eps)}, base) is None
    assert implausible({"the float64 run": np.full(50, 0.5)}, base) is not None
