"""ONNX-file adapter: an ``.onnx`` with no framework model behind it.

The reference is the same graph on ONNX Runtime's CPU provider, so ``pytest --onnx-providers=cuda`` checks
a GPU (or OpenVINO, TensorRT ...) provider against CPU for artifacts that ship without their training
code. Export is the file itself; it is only read, never written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import onnx_file
from ..errors import OnnxParityUsageError
from . import ExportResult, input_names

if TYPE_CHECKING:
    import numpy as np

    from ..settings import Settings


class PreparedOnnxFile:
    framework = "onnxruntime-cpu"

    def __init__(self, path: str, example_inputs: Any, settings: Settings) -> None:
        import numpy as np

        from .. import providers

        if settings.onnx_model is not None:
            raise OnnxParityUsageError(
                "the model is already an ONNX file; onnx_model=... is for comparing a framework model with a file."
            )
        self.source_onnx = path
        self.info = onnx_file.inspect(path, user_file=True)
        self.session, _ = providers.open_session(path, "cpu")
        if isinstance(example_inputs, Mapping):
            values = [example_inputs.get(name) for name in self.info.inputs]
            missing = [n for n, v in zip(self.info.inputs, values) if v is None]
            if missing:
                raise OnnxParityUsageError(
                    f"example_inputs lacks the graph input(s) {missing}; the graph takes {self.info.inputs}."
                )
        else:
            values = list(example_inputs) if isinstance(example_inputs, (tuple, list)) else [example_inputs]
        if len(values) != len(self.info.inputs):
            raise OnnxParityUsageError(
                f"the ONNX graph takes {len(self.info.inputs)} input(s) {self.info.inputs} but "
                f"{len(values)} example input(s) were given."
            )
        names = input_names(settings.input_names, self.info.inputs)
        self.example: dict[str, np.ndarray] = {}
        for name, value in zip(names, values):
            if not isinstance(value, np.ndarray):
                raise OnnxParityUsageError(f"example input {name!r} is a {type(value).__name__}; pass numpy arrays.")
            self.example[name] = value
        self.output_names = tuple(self.info.outputs)
        self.output_names_meaningful = True
        self.int_high_hints: tuple[int, ...] = ()
        # Symbolic dims beyond the batch axis (a "seq" dim_param) are the graph's own dynamic axes.
        self.model_dynamic_axes = {
            name: {axis: str(dim) for axis, dim in enumerate(dims) if axis > 0 and isinstance(dim, str) and dim}
            for name, dims in self.info.input_dims.items()
        }

    def run(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.runner(feed)()

    def runner(self, feed: Mapping[str, np.ndarray]) -> Callable[[], list[np.ndarray]]:
        onnx_feed = {name: feed[name] for name in self.example}
        return lambda: list(self.session.run(None, onnx_feed))

    def export(self, path: Path, dynamic_axes: Mapping[str, Mapping[int, str]], settings: Settings) -> ExportResult:
        raise AssertionError("the engine checks source_onnx itself; there is nothing to export")

    def place(self, provider: str) -> str:
        return "ONNX Runtime CPU provider"

    def versions(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        pass


def prepare(model: Any, example_inputs: Any, settings: Settings) -> PreparedOnnxFile:
    return PreparedOnnxFile(os.fspath(model), example_inputs, settings)
