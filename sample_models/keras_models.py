"""Small Keras 3 (TensorFlow backend) models and tf.functions, each with example inputs and options.

``build(name)`` is seeded, so the same weights come back every time.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf


def cnn() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4),
        ]
    )


def two_in_two_out() -> keras.Model:
    features = keras.Input((8,), name="features")
    context = keras.Input((6,), name="context")
    hidden = keras.layers.Dense(4)(features) + keras.layers.Dense(4)(context)
    return keras.Model(
        [features, context],
        {"score": keras.layers.Activation("tanh")(hidden), "gate": keras.layers.Activation("sigmoid")(hidden)},
    )


def lstm() -> keras.Model:
    """Token ids over a variable time axis (None) -> per-step tag logits."""
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    hidden = keras.layers.LSTM(16, return_sequences=True)(keras.layers.Embedding(50, 8)(tokens))
    return keras.Model(tokens, keras.layers.Dense(5)(hidden))


def batchnorm_dropout() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(16),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(3),
        ]
    )
    # Non-trivial moving statistics, as after training.
    bn = model.layers[1]
    bn.moving_mean.assign(np.linspace(-1, 1, 16).astype("float32"))
    bn.moving_variance.assign(np.linspace(0.5, 2, 16).astype("float32"))
    return model


def scaled_softplus() -> Any:
    """A plain tf.function with an input signature."""
    weights = tf.constant(np.random.default_rng(3).standard_normal((5, 2)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec((None, 5), tf.float32, name="x")])
    def fn(x: tf.Tensor) -> tf.Tensor:
        return tf.nn.softplus(tf.matmul(x, weights)) * 0.5

    return fn


def build(name: str) -> tuple[Any, Any, dict[str, Any]]:
    """(model, example inputs, onnx_parity options), seeded."""
    keras.backend.clear_session()  # layer-name counters restart, so output names are the same every time
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    if name == "cnn":
        return cnn(), rng.standard_normal((2, 16, 16, 3)).astype("float32"), {}
    if name == "two_in_two_out":
        example = {
            "features": rng.standard_normal((2, 8)).astype("float32"),
            "context": rng.standard_normal((2, 6)).astype("float32"),
        }
        return two_in_two_out(), example, {}
    if name == "lstm":
        return lstm(), rng.integers(0, 50, (2, 9)).astype("int32"), {}
    if name == "batchnorm_dropout":
        return batchnorm_dropout(), rng.standard_normal((2, 12)).astype("float32"), {}
    if name == "tf_function":
        return scaled_softplus(), tf.constant(rng.standard_normal((2, 5)).astype("float32")), {}
    raise KeyError(name)


NAMES = ("cnn", "two_in_two_out", "lstm", "batchnorm_dropout", "tf_function")
