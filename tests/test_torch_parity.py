"""PyTorch models end to end: healthy conversions pass with defaults, planted defects are caught."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, check_planted_file, failure_text
from tests.defects import DEFECTS


def test_sample_suite_passes_with_defaults(pytester: pytest.Pytester) -> None:
    """MLP, CNN, LSTM over token ids, two-in/two-out, transformer encoder with padding mask, tiny BERT."""
    from sample_models.torch_models import NAMES

    pytester.makepyfile(test_samples=(ROOT / "sample_models" / "test_torch_models.py").read_text())
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    passed, skipped, failed = reprec.listoutcomes()
    assert not failed and not skipped
    assert {r.nodeid.split("[")[1].rstrip("]") for r in passed} >= {f"cpu-{name}" for name in NAMES}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_planted_defect_is_caught(pytester: pytest.Pytester, plant, defect: str) -> None:
    model_name, edit, kind, beyond_example = DEFECTS[defect]
    text = check_planted_file(pytester, "torch_models", model_name, plant(model_name, edit))
    assert "ParityMismatch" in text and "ONNX parity FAILED on cpu" in text
    assert f"  conversion: {kind}: " in text, text
    assert "on input: " in text and "reproduce: pytest " in text and "--onnx-seed=0" in text
    if beyond_example:  # one allclose on the example would have passed: the generated inputs found it
        assert "on input: the example_inputs" not in text, text


def test_torchscript_bakes_sequence_length_into_transformer_encoder(pytester: pytest.Pytester) -> None:
    """The TorchScript exporter's own defect: nn.TransformerEncoder traced at one length fails at others."""
    pytester.makepyfile(
        """
        from sample_models.torch_models import build

        def test_encoder(onnx_parity):
            model, example, options = build("encoder")
            onnx_parity(model, example, exporter="torchscript", **options)
        """
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    assert "exporter: torchscript" in text
    assert "onnxruntime-error" in text or "shape:" in text or "values:" in text, text
