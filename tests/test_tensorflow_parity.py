"""Keras 3 / TensorFlow models end to end through tf2onnx: healthy models pass, planted defects are caught."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, check_planted_file, failure_text
from tests.defects import KERAS_DEFECTS

pytest.importorskip("tf2onnx")


def test_keras_sample_suite_passes_with_defaults(pytester: pytest.Pytester) -> None:
    """A CNN, two inputs / two outputs, an LSTM over a None time axis, BatchNorm + Dropout, a tf.function."""
    from sample_models.keras_models import NAMES

    pytester.makepyfile(test_samples=(ROOT / "sample_models" / "test_keras_models.py").read_text())
    reprec = pytester.inline_run("-p", "no:cacheprovider", "--onnx-report=r.json")
    passed, skipped, failed = reprec.listoutcomes()
    assert not failed and not skipped and len(passed) == len(NAMES)
    # The LSTM's own None time axis is walked: from 1 to past the example's length of 9.
    import json

    checks = {c["nodeid"].split("[")[1]: c for c in json.loads((pytester.path / "r.json").read_text())["checks"]}
    (time_axis,) = [fig for dim, fig in checks["cpu-lstm]"]["reach"].items() if dim != "batch"]
    assert min(time_axis["checked"]) == 1 and time_axis["largest"] > 100


@pytest.mark.parametrize("defect", sorted(KERAS_DEFECTS))
def test_planted_defect_in_tf2onnx_graph_is_caught(pytester: pytest.Pytester, plant, defect: str) -> None:
    model_name, edit, kind, beyond_example = KERAS_DEFECTS[defect]
    text = check_planted_file(pytester, "keras_models", model_name, plant(f"keras/{model_name}", edit))
    assert "ONNX parity FAILED on cpu" in text and f"  conversion: {kind}: " in text, text
    if beyond_example:
        assert "on input: the example_inputs" not in text, text


def test_tf2onnx_conversion_failure_names_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import numpy as np, tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="x")])
        def fn(x):
            y = tf.numpy_function(np.sin, [x], tf.float32)   # Python code: no ONNX equivalent
            return tf.reshape(y, tf.shape(x))

        def test_numpy_function(onnx_parity):
            onnx_parity(fn, np.ones((2, 4), np.float32))
        """
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    assert "the converter has no ONNX conversion for the TensorFlow op 'PyFunc'" in text, text
    assert "tf.numpy_function / tf.py_function runs Python code" in text
    assert "INTERNALERROR" not in text


def test_mixed_suite_imports_tensorflow_only_for_keras_tests(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(
        """
        import sys
        def pytest_runtest_setup(item):
            print(f"\\nSETUP {item.name} tensorflow_loaded={'tensorflow' in sys.modules}")
        def pytest_runtest_teardown(item):
            print(f"\\nTEARDOWN {item.name} tensorflow_loaded={'tensorflow' in sys.modules}")
        """
    )
    pytester.makepyfile(
        test_a_torch="""
        from sample_models.torch_models import build

        def test_torch(onnx_parity):
            model, example, options = build("mlp")
            assert onnx_parity(model, example, examples=3, **options).framework == "torch"
        """,
        test_b_keras="""
        def test_keras(onnx_parity):
            from sample_models.keras_models import build
            model, example, options = build("cnn")
            assert onnx_parity(model, example, examples=3, **options).framework == "tensorflow"
        """,
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*SETUP test_torch?cpu? tensorflow_loaded=False*",
            "*TEARDOWN test_torch?cpu? tensorflow_loaded=False*",
            "*SETUP test_keras?cpu? tensorflow_loaded=False*",
            "*TEARDOWN test_keras?cpu? tensorflow_loaded=True*",
        ]
    )


def test_savedmodel_directory_and_tf_module(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import numpy as np, pytest, tensorflow as tf
        from sample_models.keras_models import build

        class Scaler(tf.Module):
            def __init__(self):
                self.w = tf.Variable(np.linspace(-1, 1, 6, dtype="float32").reshape(3, 2))

            @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32, name="x")])
            def __call__(self, x):
                return {"y": tf.nn.elu(x @ self.w)}

        def test_tf_module(onnx_parity):
            report = onnx_parity(Scaler(), None)            # the input signature builds the example
            assert report.outputs[0].name == "y"

        def test_savedmodel(onnx_parity, tmp_path):
            model, example, _ = build("cnn")
            model.export(str(tmp_path / "saved"), verbose=False)
            report = onnx_parity(str(tmp_path / "saved"), example)
            assert report.passed and report.framework == "tensorflow"

        def test_unknown_signature(onnx_parity, tmp_path):
            model, example, _ = build("cnn")
            model.export(str(tmp_path / "saved"), verbose=False)
            onnx_parity(str(tmp_path / "saved"), example, signature="predict")
        """
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=2, failed=1)
    (text,) = failure_text(reprec).values()
    assert "has no signature 'predict'; it has ['serve', 'serving_default']" in text, text


def test_legacy_tf_keras_model(pytester: pytest.Pytester) -> None:
    pytest.importorskip("tf_keras")
    pytester.makepyfile(
        """
        import numpy as np, tf_keras

        def test_legacy(onnx_parity):
            tf_keras.utils.set_random_seed(0)
            inputs = tf_keras.Input((5,), name="features")
            hidden = tf_keras.layers.Dense(8, activation="relu")(inputs)
            model = tf_keras.Model(inputs, {"logits": tf_keras.layers.Dense(2)(hidden)})
            report = onnx_parity(model, np.random.default_rng(0).standard_normal((2, 5)).astype("float32"))
            assert report.passed and "tf_keras" in report.versions
            assert [o.name for o in report.outputs] == ["logits"]
        """
    )
    pytester.inline_run("-p", "no:cacheprovider").assertoutcome(passed=1)


def test_the_noise_of_a_keras_reference_comes_from_a_float64_twin() -> None:
    """A functional Keras model with BatchNorm: its float64 clone really computes in float64 (each layer's config
    names its dtype; the global policy alone would leave a float32 copy and no noise on exact zeros)."""
    import keras
    import numpy as np

    from pytest_onnxparity.adapters.keras_layers import float64_outputs
    from pytest_onnxparity.engine import check as engine
    from pytest_onnxparity.options.settings import CheckOptions

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.BatchNormalization()(keras.layers.Conv2D(16, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(hidden)))
    bn = model.layers[2]
    bn.set_weights([w + np.float32(0.3) * np.arange(16, dtype=np.float32) for w in bn.get_weights()])
    example = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    prepared = engine.prepare(model, example, CheckOptions())
    try:
        feed = {name: np.zeros_like(value) for name, value in prepared.example.items()}
        twin = float64_outputs(prepared, feed)
        assert twin is not None
        (value,) = twin.values()
        (reference,) = prepared.infer(feed).values()
        assert value.dtype == np.float64
        assert 0 < np.abs(value - reference).max() < 1e-4, "float32 rounding, measured against float64"
    finally:
        prepared.close()
