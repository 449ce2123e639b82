"""tf2onnx conversion for the TensorFlow adapter: ``from_function`` on a ``tf.function`` with an input signature.

(``tf2onnx.convert.from_keras`` raises ``KeyError: 'keras_tensor_N'`` on Keras 3, so every model, Keras or
not, is converted as a function.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OnnxParityError, OnnxParityUsageError
from . import ExportResult, quiet, short_error, write_error

if TYPE_CHECKING:
    import numpy as np

    from ..options.settings import CheckOptions

#: The opset used unless ``opset=`` says otherwise (tf2onnx 1.17 supports up to 18).
DEFAULT_OPSET = 17


def export(
    call: Callable[[list[Any]], list[Any]],
    example: Mapping[str, np.ndarray],
    output_names: Sequence[str],
    path: Path,
    dynamic_axes: Mapping[str, Mapping[int, str]],
    options: CheckOptions,
) -> ExportResult:
    """Convert ``call`` (tensors in the example's order -> flat outputs) with the example's signature."""
    if options.exporter not in ("auto",):
        raise OnnxParityUsageError(
            f"exporter={options.exporter!r} is a PyTorch exporter; TensorFlow models are converted with tf2onnx "
            "(leave exporter at 'auto')."
        )
    import onnx
    import tensorflow as tf
    import tf2onnx

    specs = []
    for name, array in example.items():
        dyn = dynamic_axes.get(name, {})
        shape = [None if axis in dyn else n for axis, n in enumerate(array.shape)]
        specs.append(tf.TensorSpec(shape, tf.as_dtype(array.dtype), name=name))
    opset = options.opset or DEFAULT_OPSET
    function = tf.function(lambda *xs: call(list(xs)))
    try:
        with quiet("tf2onnx", "tensorflow", "absl"):
            proto, _ = tf2onnx.convert.from_function(function, input_signature=tuple(specs), opset=opset)
            _inline_captured_constants(proto, function.get_concrete_function(*specs), list(example))
    except Exception as exc:
        raise OnnxParityError(
            f"tf2onnx could not convert the model (opset {opset}): {short_error(exc)}\n  Fix: an op tf2onnx lacks "
            "may exist at a higher opset (opset=18), otherwise convert it yourself and pass the file as "
            "onnx_model=..."
        ) from exc
    _rename_outputs(proto, list(output_names))
    try:
        onnx.save(proto, str(path))
    except OSError as exc:
        unwritten = write_error(exc, path, "tf2onnx")
        if unwritten is None:
            raise
        raise unwritten from exc
    return ExportResult(f"tf2onnx {tf2onnx.__version__} (from_function)")


def _inline_captured_constants(proto: Any, concrete: Any, input_names: list[str]) -> None:
    """tf2onnx turns tensors a tf.function captured from eager code into graph inputs; make them initializers.

    (Variables are frozen by tf2onnx itself; a captured ``tf.constant`` is not.)
    """
    from onnx import numpy_helper

    graph = proto.graph
    extra = {i.name for i in graph.input} - set(input_names)
    if not extra:
        return
    values = {}
    for external, internal in zip(concrete.captured_inputs, concrete.graph.internal_captures):
        if internal.name in extra and hasattr(external, "numpy"):
            values[internal.name] = external.numpy()
    for name, value in values.items():
        graph.initializer.append(numpy_helper.from_array(value, name))
    kept = [i for i in graph.input if i.name not in values]
    del graph.input[:]
    graph.input.extend(kept)


def _rename_outputs(proto: Any, names: list[str]) -> None:
    """tf2onnx names outputs ``Identity:0``...; give them the model's names (the order is ours)."""
    graph = proto.graph
    mapping = {o.name: new for o, new in zip(graph.output, names) if o.name != new}
    for node in graph.node:
        node.output[:] = [mapping.get(n, n) for n in node.output]
        node.input[:] = [mapping.get(n, n) for n in node.input]
    for output in graph.output:
        output.name = mapping.get(output.name, output.name)


def fingerprint(model: Any, call: Callable[[list[Any]], Any], example: Mapping[str, np.ndarray]) -> str:
    """The model's type, its traced graph and its weights (and a tf.function's captured values)."""
    import hashlib

    import numpy as np
    import tensorflow as tf

    digest = hashlib.blake2b(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    specs = [tf.TensorSpec(a.shape, tf.as_dtype(a.dtype)) for a in example.values()]
    concrete = tf.function(lambda *xs: call(list(xs))).get_concrete_function(*specs)
    for node in concrete.graph.as_graph_def().node:  # names carry process-wide counters; ops and wiring do not
        digest.update(f"{node.op}:{len(node.input)}".encode())
    for value in [*getattr(model, "weights", []), *concrete.captured_inputs]:
        try:
            digest.update(np.asarray(value.numpy()).tobytes())
        except Exception:  # a resource handle (a captured variable) has no value of its own: its weight is above
            digest.update(str(getattr(value, "dtype", "")).encode())
    return digest.hexdigest()
