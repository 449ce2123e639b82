"""Keras models looked into: every layer's output on one input (localization), and the model rebuilt in
float64 with its weights (the reference's own rounding error)."""

from __future__ import annotations

from typing import Any

from . import ModuleValues


def layer_outputs(model: Any, tensors: list[Any]) -> list[ModuleValues]:
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
        records.append(ModuleValues(layer.name, f"{type(layer).__module__}.{type(layer).__qualname__}", arrays))
    return records


def float64_outputs(prepared: Any, feed: Any) -> dict[str, Any] | None:
    """The model's outputs computed in float64 (a clone under the float64 dtype policy, weights copied), or None
    where it cannot be rebuilt (a subclassed model, mixed precision, a layer without a float64 kernel)."""
    import numpy as np

    try:
        import keras

        copy = getattr(prepared, "_model64", None)
        if copy is None:
            previous = keras.config.dtype_policy()
            keras.config.set_dtype_policy("float64")
            try:  # each layer's config names its dtype: the global policy alone leaves a clone in float32
                copy = keras.models.clone_model(prepared.model, clone_function=_in_float64)
            finally:
                keras.config.set_dtype_policy(previous)
            copy.set_weights(
                [
                    np.asarray(w, np.float64) if np.issubdtype(np.asarray(w).dtype, np.floating) else w
                    for w in prepared.model.get_weights()
                ]
            )
            prepared._model64 = copy
        xs = [
            np.asarray(feed[name], np.float64) if np.issubdtype(feed[name].dtype, np.floating) else feed[name]
            for name in prepared.example
        ]
        out = copy(xs[0] if len(xs) == 1 else xs, training=False)
    except Exception:  # no float64 twin of this model: the perturbation estimate stands alone
        return None
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else [out]
    arrays = [np.asarray(v) for v in values]
    return dict(zip(prepared.output_names, arrays)) if len(arrays) == len(prepared.output_names) else None


def _in_float64(layer: Any) -> Any:
    config = layer.get_config()
    if "dtype" in config:
        config["dtype"] = "float64"
    return layer.__class__.from_config(config)
