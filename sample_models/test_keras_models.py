"""The sample parity suite for Keras 3 / TensorFlow models (converted with tf2onnx)."""

import pytest

pytest.importorskip(
    "tf2onnx", reason="the tensorflow extra is not installed: pip install 'pytest-onnxparity[tensorflow]'"
)

from sample_models.keras_models import NAMES, build


@pytest.mark.parametrize("name", NAMES)
def test_keras_model_parity(onnx_parity, name):
    model, example, options = build(name)
    report = onnx_parity(model, example, **options)
    assert report.passed and report.framework == "tensorflow"
