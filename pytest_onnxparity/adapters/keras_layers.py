"""Every layer's output of a Keras (functional or Sequential) model on one input, for localization."""

from __future__ import annotations

from typing import Any


def layer_outputs(model: Any, tensors: list[Any]) -> list[tuple[str, str, list[Any]]]:
    """(layer name, layer class, its output arrays) in the model's layer order; [] where Keras cannot say
    (a subclassed model, a tf.function: no symbolic layer graph)."""
    import numpy as np

    try:
        import keras

        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        outputs = [layer.output for layer in layers]
        probe = keras.Model(model.inputs, outputs)
        values = probe(tensors[0] if len(tensors) == 1 else tensors, training=False)
    except Exception:  # no symbolic graph to take intermediate outputs from
        return []
    records = []
    for layer, value in zip(layers, values if len(layers) > 1 else [values]):
        arrays = [np.asarray(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        records.append((layer.name, f"{type(layer).__module__}.{type(layer).__qualname__}", arrays))
    return records
