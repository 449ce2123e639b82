"""Loading and validating an ONNX file: the checker, shape inference, and the graph's inputs/outputs."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .errors import OnnxParityError, OnnxParityUsageError


@dataclasses.dataclass
class OnnxInfo:
    path: str
    inputs: list[str]
    outputs: list[str]
    opset: int | None
    #: Per input: each dimension as an int (fixed), a str (symbolic) or None (unknown).
    input_dims: dict[str, list[int | str | None]]


def inspect(path: str | os.PathLike[str], user_file: bool) -> OnnxInfo:
    """Check the model with ``onnx.checker`` and strict shape inference; read its interface.

    ``user_file`` words the errors for a file the user gave (``onnx_model=``) rather than one we exported.
    """
    import onnx

    file = Path(path)
    origin = "onnx_model" if user_file else "the exported model"
    if not file.exists():
        raise OnnxParityUsageError(f"{origin} {os.fspath(path)!r} does not exist; pass the path of an .onnx file.")
    if not file.is_file():
        raise OnnxParityUsageError(f"{origin} {os.fspath(path)!r} is not a file; pass the path of an .onnx file.")
    try:
        model = onnx.load(os.fspath(file), load_external_data=False)
    except Exception as exc:
        raise OnnxParityUsageError(
            f"{origin} {os.fspath(path)!r} is not an ONNX model (it does not parse as an ONNX protobuf: {exc}); "
            "pass the .onnx file that torch.onnx.export / tf2onnx wrote."
        ) from exc
    if not model.graph.output:
        raise OnnxParityUsageError(
            f"{origin} {os.fspath(path)!r} has no graph outputs; is it really an ONNX model (an empty or "
            "unrelated protobuf parses as an empty model)?"
        )
    try:
        onnx.checker.check_model(os.fspath(file))
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise OnnxParityError(
            f"{origin} {os.fspath(path)!r} is not a valid ONNX model: {type(exc).__name__}: {exc}"
        ) from exc
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    dims: dict[str, list[int | str | None]] = {}
    for value in inputs:
        shape = value.type.tensor_type.shape
        dims[value.name] = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None)
            for d in shape.dim
        ]
    return OnnxInfo(os.fspath(file), [i.name for i in inputs], [o.name for o in model.graph.output], opset, dims)
