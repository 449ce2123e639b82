"""A verdict to trust: healthy real architectures pass, float noise is known, small real defects are caught,
checks that cannot fail are flagged, and the messages on the way say what happened."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import failures_by_test, parity_warnings

HEALTHY = """
import torch
from tests.models import ConvGroupNorm, DeepBatchNorm, TiedTopK

def test_tied_topk(onnx_parity):
    report = onnx_parity(TiedTopK().eval(), torch.randn(2, 6))
    assert sum(o.ties for o in report.outputs) > 0       # torch and ONNX Runtime picked different, tied indices

def test_groupnorm_on_constant_input(onnx_parity):
    report = onnx_parity(ConvGroupNorm().eval(), torch.randn(2, 64))
    assert report.outputs[0].noise > 0                   # the reference's own noise was measured and credited

def test_groupnorm_without_the_noise_term(onnx_parity):
    onnx_parity(ConvGroupNorm().eval(), torch.randn(2, 64), noise_factor=0)

def test_deep_batchnorm_on_large_inputs(onnx_parity):
    assert onnx_parity(DeepBatchNorm().eval(), torch.randn(2, 16)).passed
"""


def test_healthy_models_pass_where_float_noise_or_ties_would_raise_false_alarms(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_healthy=HEALTHY)
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=3, failed=1)
    (text,) = failures_by_test(reprec).values()  # ill-conditioned indeed: a fixed tolerance alone fails it
    assert "edge: constant rows" in text or "edge: exact zeros" in text or "edge: ones" in text, text


DECODER = """
import copy, numpy as np, onnx, pytest, torch
from onnx import numpy_helper
from pytest_onnxparity import ParityMismatch
from tests.models import tiny_llama

AXES = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}

def example():
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 12, dtype=torch.int64)
    mask[0, 9:] = 0
    return {"input_ids": ids, "attention_mask": mask}

def test_causal_decoder_with_padding_and_a_small_weight_change(onnx_parity, tmp_path):
    model = tiny_llama()
    report = onnx_parity(model, example(), dynamic_axes=AXES, examples=8)
    assert report.outputs[0].excluded > 0               # padded positions: undefined, not compared
    exported = onnx.load(report.onnx_path)
    matrices = [t for t in exported.graph.initializer if len(t.dims) == 2 and t.dims[0] == t.dims[1] == 64]
    middle = matrices[len(matrices) // 2]                # one attention matrix in a middle layer, x1.001
    middle.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(middle) * np.float32(1.001), middle.name))
    onnx.save(exported, str(tmp_path / "defect.onnx"))
    with pytest.raises(ParityMismatch) as caught:
        onnx_parity(model, example(), dynamic_axes=AXES, examples=8, onnx_model=str(tmp_path / "defect.onnx"))
    assert caught.value.report.failure.kind == "values"

def test_padding_included_on_request(onnx_parity):
    onnx_parity(tiny_llama(), example(), dynamic_axes=AXES, examples=0, include_padding=True)
"""


def test_a_causal_decoder_passes_and_a_0_1_percent_weight_change_is_caught(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_decoder=DECODER)
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=1, failed=1)
    text = failures_by_test(reprec)["test_padding_included_on_request"]
    assert "values: output 'last_hidden_state'" in text, text  # SDPA's 0 vs the export's uniform attention


VACUOUS = """
import torch
from tests.models import ConstantHead, NearlyConstant

def test_constant(onnx_parity):
    onnx_parity(ConstantHead().eval(), torch.randn(2, 8))

def test_nearly_constant(onnx_parity):
    onnx_parity(NearlyConstant().eval(), torch.randn(2, 8))
"""


def test_checks_that_cannot_fail_are_flagged_and_fail_under_strict(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_vacuous=VACUOUS)
    relaxed = pytester.inline_run("-p", "no:cacheprovider")
    relaxed.assertoutcome(passed=2)
    flagged = [w for w in parity_warnings(relaxed) if "does not depend on the inputs" in w]
    assert {w.split("::")[1].split("[")[0] for w in flagged} == {"test_constant", "test_nearly_constant"}
    strict = pytester.inline_run("-p", "no:cacheprovider", "--onnx-strict")
    strict.assertoutcome(failed=2)


GENERATED_ONLY = """
import torch
from tests.models import export_file

class Scale(torch.nn.Module):
    def forward(self, x):
        return x * 2

class ClampedScale(torch.nn.Module):                 # right for |x| <= 6, where the example lies
    def forward(self, x):
        return torch.clamp(x, -6, 6) * 2

def test_found_by_a_generated_input(onnx_parity, onnx_parity_provider, tmp_path):
    exported = ClampedScale() if onnx_parity_provider == "cpu" else Scale()   # "flaky" errs by itself
    path = export_file(exported, torch.randn(2, 3), tmp_path / "m.onnx")
    onnx_parity(Scale(), torch.randn(2, 3).clamp(-3, 3), onnx_model=path, edge_cases=(), examples=40)
"""


@pytest.mark.parametrize("provider", ["cpu", "flaky"])
def test_a_mismatch_found_by_a_generated_input_is_reported(pytester: pytest.Pytester, provider: str) -> None:
    """Whatever hypothesis does with it (shrinking, a flaky replay on a non-deterministic provider)."""
    pytester.makeconftest(
        """
        from tests.standin import standin

        def pytest_onnxparity_providers():
            return [standin("flaky", flaky=True)]
        """
    )
    pytester.makepyfile(test_generated=GENERATED_ONLY)
    reprec = pytester.inline_run("-p", "no:cacheprovider", f"--onnx-providers={provider}", "--onnx-report=r.json")
    reprec.assertoutcome(failed=1)
    (text,) = failures_by_test(reprec).values()
    assert "ParityMismatch" in text and "on input: generated:" in text and "reproduce: pytest" in text, text
    assert "Flaky" not in text and "hypothesis" not in text.lower().replace("hypothesis draws", "")
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert check["failure"]["recipe"]["label"] == "generated"


def test_a_keras_gelu_the_converter_cannot_convert_is_named(pytester: pytest.Pytester) -> None:
    pytest.importorskip("tf2onnx")
    pytester.makepyfile(
        """
        import keras, numpy as np

        def test_exact_gelu(onnx_parity):
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="gelu"),
                                      keras.layers.Dense(2)])
            onnx_parity(model, np.random.default_rng(0).standard_normal((2, 6)).astype("float32"))
        """
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failures_by_test(reprec).values()
    assert re.search(
        r"no ONNX conversion for the TensorFlow op 'Erfc' at node 'sequential\w*/dense\w*/Gelu/Erfc'", text
    )
    assert "approximate=True" in text, text
    assert text.count("\n") < 40, "the converter's log stays out of the message"


def test_a_keras_artifact_with_other_input_names_is_matched(pytester: pytest.Pytester) -> None:
    pytest.importorskip("tf2onnx")
    pytester.makepyfile(
        """
        import onnx
        from sample_models.keras_models import build

        def _renamed(path, tmp_path, names):
            model = onnx.load(path)
            for value, new in zip(model.graph.input, names):
                for node in model.graph.node:
                    node.input[:] = [new if i == value.name else i for i in node.input]
                value.name = new
            onnx.save(model, str(tmp_path / "renamed.onnx"))
            return str(tmp_path / "renamed.onnx")

        def test_one_input(onnx_parity, tmp_path):
            model, example, _ = build("cnn")
            path = _renamed(onnx_parity(model, example, examples=0).onnx_path, tmp_path, ["keras_tensor"])
            assert onnx_parity(model, example, onnx_model=path, examples=0).passed

        def test_two_inputs_by_position(onnx_parity, tmp_path):
            model, example, _ = build("two_in_two_out")
            path = _renamed(onnx_parity(model, example, examples=0).onnx_path, tmp_path, ["in_a", "in_b"])
            report = onnx_parity(model, example, onnx_model=path, examples=0)
            assert any("matched by position" in w for w in report.warnings)
        """
    )
    pytester.inline_run("-p", "no:cacheprovider", "-W", "ignore").assertoutcome(passed=2)
