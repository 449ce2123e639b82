"""How the ONNX graph's inputs line up with the model's: names, order, dtypes, inputs the export dropped."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import OnnxParityError, OnnxParityUsageError

if TYPE_CHECKING:
    import numpy as np

    from ..graph.info import GraphInfo


@dataclasses.dataclass
class Interface:
    #: Graph input name -> the model's input name that feeds it.
    feed_names: dict[str, str]
    warnings: list[str]


def match(example: Mapping[str, np.ndarray], info: GraphInfo, user_file: bool) -> Interface:
    """Map graph inputs onto the model's; refuse what cannot be fed, warn about what looks wrong."""
    model_names, graph_names = list(example), list(info.inputs)
    warnings: list[str] = []
    missing = [name for name in graph_names if name not in example]
    if missing and user_file and len(graph_names) == len(model_names):
        feed = dict(zip(graph_names, model_names))
        if len(graph_names) > 1:
            warnings.append(
                f"the ONNX graph names its inputs {graph_names} and the model {model_names}: they were matched by "
                "position; pass input_names=... to match them by name"
            )
    elif missing:
        raise OnnxParityUsageError(
            f"the ONNX graph takes input(s) {missing} that the example inputs do not provide (the graph takes "
            f"{graph_names}, the model {model_names}); pass input_names=... matching the ONNX graph's inputs."
        )
    else:
        feed = {name: name for name in graph_names}
        in_model_order = [name for name in model_names if name in info.inputs]
        if in_model_order != graph_names:
            warnings.append(
                f"the ONNX graph lists its inputs as {graph_names} but the model takes them as {model_names}: runtimes "
                "that feed inputs by position get them swapped (inputs were matched by name here)"
            )
        dropped = [name for name in model_names if name not in info.inputs]
        if dropped:
            warnings.append(
                f"the ONNX graph does not take input(s) {dropped}: the exporter dropped them (the model ignores them "
                "for the example), so changing them in production has no effect in ONNX"
            )
    for graph_name, model_name in feed.items():
        _check_dtype(graph_name, info.input_dtypes.get(graph_name, ""), example[model_name].dtype.name)
    return Interface(feed, warnings)


def _check_dtype(name: str, graph: str, model: str) -> None:
    """The graph must take each input in the model's dtype; say what changed it."""
    if not graph or graph == model:
        return
    hint = ""
    if graph in ("float16", "bfloat16") and model == "float32":
        hint = " (a half-precision conversion without keep_io_types=True?)"
    elif graph.startswith("int") and model.startswith("int"):
        hint = " (an int32/int64 cast in the conversion?)"
    raise OnnxParityError(
        f"the ONNX graph takes input {name!r} as {graph} but the model takes {model}: the conversion changed the "
        f"input's dtype{hint}. Convert keeping the model's input types, or pass example inputs of the dtype the "
        "model is meant to take."
    )
