"""The sample parity suite for PyTorch models: every conversion must be faithful with default settings."""

import pytest

from sample_models.torch_models import NAMES, build


@pytest.mark.parametrize("name", NAMES)
def test_torch_model_parity(onnx_parity, name):
    model, example, options = build(name)
    report = onnx_parity(model, example, **options)
    assert report.passed and report.examples > 20


@pytest.mark.onnx_parity(atol=1e-5, rtol=1e-4, batch_sizes=(1, 3, 16))
def test_classifier_with_marker_options(onnx_parity):
    model, example, _ = build("mlp")
    report = onnx_parity(model, example)
    assert report.passed
    # the marker's atol judges the export (an fp16 variant, with --onnx-variants, gets float16's where wider)
    assert report.outputs[0].atol == (1e-5 if report.variant != "fp16" else 1e-2)
