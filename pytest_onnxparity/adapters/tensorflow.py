"""TensorFlow / Keras adapter: reference runs in inference mode, export with tf2onnx.

Why not ``tf2onnx.convert.from_keras``: with Keras 3 it raises ``KeyError: 'keras_tensor_N'`` (tf2onnx 1.17
walks Keras 2 internals). Every model is therefore wrapped in a ``tf.function`` with an explicit input
signature — ``training=False`` for Keras — and converted with ``tf2onnx.convert.from_function``; the same
path serves Keras 3, legacy ``tf_keras``, plain ``tf.function``s, ``tf.Module``s and SavedModel signatures.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OnnxParityUsageError
from . import ExportResult, ModuleValues, call_model, input_names, output_names, outputs_on_example, positional_names

if TYPE_CHECKING:
    import numpy as np

    from ..options.settings import CheckOptions


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    return tf


def flatten_outputs(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten outputs in the order the model returns them; dict keys become names, positions ``output_i``."""
    if isinstance(obj, Mapping):
        return [leaf for k, v in obj.items() for leaf in flatten_outputs(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(obj, (tuple, list)):
        return [
            leaf for i, v in enumerate(obj) for leaf in flatten_outputs(v, f"{prefix}_{i}" if prefix else f"output_{i}")
        ]
    if obj is None:
        return []
    return [(prefix or "output", obj)]


class PreparedTensorFlowModel:
    name = "tensorflow"

    def __init__(self, model: Any, example_inputs: Any, options: CheckOptions) -> None:
        tf = _tf()
        self.int_high_hints: tuple[int, ...] = ()
        self.model_dynamic_axes: dict[str, dict[int, str]] = {}
        self.sequence_limit: int | None = None
        self.length_limits: tuple[int, ...] = ()
        self._call, derived, declared = self._callable(model, options)
        self._compiled: Any = None  # the graph-mode reference (False: eager only)
        self._model64: Any = None  # the float64 twin (keras_layers.float64_outputs)
        if example_inputs is None:
            if declared is None:
                raise OnnxParityUsageError(
                    "example_inputs is None, but the model declares no input signature to build an example from; "
                    "pass example inputs (numpy arrays or tf tensors)."
                )
            example_inputs = [_example_from_spec(spec) for spec in declared]
        self._keyword = isinstance(example_inputs, Mapping)
        if isinstance(example_inputs, Mapping):
            values = list(example_inputs.values())
            names = [str(k) for k in example_inputs]
            if derived and set(names) != set(derived) and len(derived) == len(names):
                raise OnnxParityUsageError(
                    f"example_inputs keys {names} do not match the model's input names {derived}; key the dict by "
                    "the model's input names, or pass a list in the model's input order."
                )
            if derived and set(names) == set(derived):
                values = [example_inputs[n] for n in derived]
                names = list(derived)
        else:
            values = list(example_inputs) if isinstance(example_inputs, (tuple, list)) else [example_inputs]
            fallback = ["input"] if len(values) == 1 else [f"input_{i}" for i in range(len(values))]
            names = list(derived) if derived and len(derived) == len(values) else fallback
        names = list(input_names(options.input_names, names))
        import numpy as np

        self.example: dict[str, np.ndarray] = {}
        for name, value in zip(names, values):
            if isinstance(value, (tf.Tensor, tf.Variable)):
                value = value.numpy()
            if not isinstance(value, np.ndarray):
                raise OnnxParityUsageError(
                    f"example input {name!r} is a {type(value).__name__}; pass numpy arrays or tf tensors, as one "
                    "array, a list in the model's input order, or a dict keyed by input name."
                )
            self.example[name] = np.array(value, copy=True)
        if declared is not None:
            for name, spec in zip(self.example, declared):
                dims = {i: f"{name}_dim{i}" for i, d in enumerate(spec.shape) if d is None and i > 0}
                if dims:
                    self.model_dynamic_axes[name] = dims
        self.model = model
        named, self.code_files = outputs_on_example(lambda: flatten_outputs(self._call(self._tensors(self.example))))
        derived_outputs = self._structure = [n for n, _ in named]
        positional = positional_names(derived_outputs)
        # Names a user-supplied ONNX file must carry: the user's, or dict keys of the model's outputs. Keras
        # layer names ("dense_3") name our own exports but are process-dependent counters, so not checked there.
        self.output_names_meaningful = options.output_names is not None or not positional
        keras_names = self._keras_output_names(model, len(derived_outputs))
        if keras_names is not None and positional:
            derived_outputs = keras_names
        self.output_names = output_names(options.output_names, derived_outputs)

    @staticmethod
    def _keras_output_names(model: Any, count: int) -> list[str] | None:
        names = getattr(model, "output_names", None) if _is_keras(model) else None
        if not names or len(names) != count or any(re.fullmatch(r"keras_tensor(_\d+)?", n) for n in names):
            return None
        return [str(n) for n in names]

    def _callable(self, model: Any, options: CheckOptions) -> tuple[Callable[[list[Any]], Any], list[str], Any]:
        """(call on a list of tensors, the model's own input names, its declared TensorSpecs or None)."""
        tf = _tf()
        if isinstance(model, (str, os.PathLike)):
            loaded = tf.saved_model.load(os.fspath(model))
            signatures = dict(loaded.signatures)
            if options.signature not in signatures:
                raise OnnxParityUsageError(
                    f"SavedModel {os.fspath(model)!r} has no signature {options.signature!r}; it has "
                    f"{sorted(signatures)}. Pass signature=... to pick one."
                )
            fn = signatures[options.signature]
            _, kwargs = fn.structured_input_signature
            signature_names = list(kwargs)
            self._keep_alive = loaded

            def call_signature(xs: list[Any]) -> Any:
                out = fn(**dict(zip(signature_names, xs)))
                return {k: out[k] for k in sorted(out)}

            return call_signature, signature_names, [kwargs[n] for n in signature_names]
        if _is_keras(model):
            declared = None
            names: list[str] = []
            try:
                inputs = list(model.inputs)  # functional and Sequential models; subclassed ones have none
            except (AttributeError, ValueError, TypeError):
                inputs = []
            embeddings = [layer for layer in model._flatten_layers() if hasattr(layer, "input_dim")]
            self.int_high_hints = tuple(sorted({int(layer.input_dim) for layer in embeddings}))
            positional = [int(layer.input_dim) for layer in embeddings if re.search(r"pos", layer.name, re.IGNORECASE)]
            self.sequence_limit = min(positional) if positional else None
            if inputs:
                names = [t.name for t in inputs]
                if any(re.fullmatch(r"keras_tensor(_\d+)?", n) for n in names):
                    names = []
                declared = [tf.TensorSpec(tuple(t.shape), t.dtype) for t in inputs]
            single = bool(inputs) and len(inputs) == 1

            def call_keras(xs: list[Any]) -> Any:
                args = xs[0] if single or (not inputs and len(xs) == 1) else list(xs)
                if self._keyword and names:
                    args = dict(zip(names, xs))
                return model(args, training=False)

            return call_keras, names, declared
        fn = model if _is_tf_function(model) else getattr(model, "__call__", None)  # noqa: B004 (a tf.Module's tf.function)
        if fn is None or not callable(fn):
            raise OnnxParityUsageError(
                f"{type(model).__name__} is a tf.Module without __call__; wrap the computation in a tf.function."
            )
        signature = getattr(fn, "input_signature", None)
        names = [s.name or f"input_{i}" for i, s in enumerate(signature)] if signature else []

        def call_function(xs: list[Any]) -> Any:
            if self._keyword:
                return fn(**dict(zip(self.example, xs)))
            return fn(*xs)

        return call_function, names, list(signature) if signature else None

    def _tensors(self, feed: Mapping[str, np.ndarray]) -> list[Any]:
        import numpy as np

        tf = _tf()
        return [tf.constant(np.array(feed[name], copy=True)) for name in self.example]

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model in graph mode (as Keras's own predict runs it; several times faster than eager over many
        input shapes), falling back to eager for a model that cannot be traced."""
        import numpy as np

        tensors = self._tensors(feed)
        if self._compiled is None:
            tf = _tf()
            self._compiled = tf.function(lambda *xs: self._call(list(xs)), reduce_retracing=True, autograph=False)
        if self._compiled is not False:
            try:
                named = flatten_outputs(self._compiled(*tensors))
                if [n for n, _ in named] == self._structure:
                    return {name: np.array(t) for name, (_, t) in zip(self.output_names, named)}
            except Exception:  # not traceable, or the input is rejected: eager decides which
                pass
        named = call_model(lambda: self._call(tensors), flatten_outputs, self._structure)
        self._compiled = False  # eager took an input graph mode did not: stay eager
        return {name: np.array(t) for name, (_, t) in zip(self.output_names, named)}

    def intermediates(self, feed: Mapping[str, np.ndarray]) -> list[ModuleValues]:
        """(layer name, class, its outputs) for every layer of a functional or Sequential Keras model."""
        from .keras_layers import layer_outputs

        return layer_outputs(self.model, self._tensors(feed)) if _is_keras(self.model) else []

    def timed_call(self, feed: Mapping[str, np.ndarray]) -> tuple[Callable[[], Any], str]:
        """What a deployment runs: the model compiled as a ``tf.function`` (graph mode), not an eager call.

        Converting outputs to numpy waits for the device, so a timed call includes all device work.
        """
        import numpy as np

        tf = _tf()
        tensors = self._tensors(feed)
        compiled = tf.function(lambda *xs: [t for _, t in flatten_outputs(self._call(list(xs)))])
        compiled.get_concrete_function(*tensors)  # traced here, outside the timed region
        return (lambda: [np.asarray(t) for t in compiled(*tensors)]), "tf.function (graph mode), inference"

    def export(self, path: Path, dynamic_axes: Mapping[str, Mapping[int, str]], options: CheckOptions) -> ExportResult:
        from .tensorflow_export import export

        call = self._call
        return export(
            lambda xs: [t for _, t in flatten_outputs(call(xs))],
            self.example,
            self.output_names,
            path,
            dynamic_axes,
            options,
        )

    def fingerprint(self) -> str:
        from .tensorflow_export import fingerprint

        return fingerprint(self.model, self._call, self.example)

    def infer_float64(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """A Keras model rebuilt in float64 with its weights (the reference's own rounding error); else None."""
        from .keras_layers import float64_outputs

        return float64_outputs(self, feed) if _is_keras(self.model) else None

    def versions(self) -> dict[str, str]:
        tf = _tf()
        import tf2onnx

        out = {"tensorflow": str(tf.__version__), "tf2onnx": str(tf2onnx.__version__)}
        for package in ("keras", "tf_keras"):
            module = sys.modules.get(package)
            if module is not None and isinstance(self.model, module.Model):
                out[package] = str(module.__version__)
        return out

    def place(self, provider: str) -> str:
        """TensorFlow places ops itself (a visible GPU is used by default); report where."""
        tf = _tf()
        return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"

    def close(self) -> None:
        pass


def _is_keras(model: Any) -> bool:
    bases = [sys.modules[n].Model for n in ("keras", "tf_keras") if n in sys.modules]
    return bool(bases) and isinstance(model, tuple(bases))


def _is_tf_function(model: Any) -> bool:
    tf = _tf()
    return isinstance(model, tf.types.experimental.GenericFunction)


def _example_from_spec(spec: Any) -> np.ndarray:
    import numpy as np

    shape = [2 if d is None else d for d in spec.shape]
    dtype = spec.dtype.as_numpy_dtype
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    return rng.integers(0, 10, size=shape).astype(dtype)


def prepare(model: Any, example_inputs: Any, options: CheckOptions) -> PreparedTensorFlowModel:
    return PreparedTensorFlowModel(model, example_inputs, options)
