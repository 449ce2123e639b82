"""ONNX-file adapter: an ``.onnx`` with no framework model behind it.

The reference runner is the same graph on ONNX Runtime's CPU provider, so ``pytest --onnx-providers=cuda``
checks a GPU (or OpenVINO, TensorRT ...) provider against CPU for artifacts that ship without their
training code. Its "export" is the file itself, which is only read, never written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelRejected, OnnxParityUsageError
from ..graph import info as graph
from ..runners.onnxruntime import OrtRunner
from . import ExportResult, input_names

if TYPE_CHECKING:
    import numpy as np

    from ..options.settings import CheckOptions


class PreparedOnnxFile:
    name = "onnxruntime-cpu"

    def __init__(self, path: str, example_inputs: Any, options: CheckOptions) -> None:
        import numpy as np

        if options.onnx_model is not None:
            raise OnnxParityUsageError(
                "the model is already an ONNX file; onnx_model=... is for comparing a framework model with a file."
            )
        self.path = path
        self.info = graph.inspect(path, user_file=True)
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
        names = input_names(options.input_names, self.info.inputs)
        self.example: dict[str, np.ndarray] = {}
        for name, value in zip(names, values):
            if not isinstance(value, np.ndarray):
                raise OnnxParityUsageError(f"example input {name!r} is a {type(value).__name__}; pass numpy arrays.")
            self.example[name] = np.array(value, copy=True)
        self.output_names = tuple(self.info.outputs)
        self.output_names_meaningful = True
        self.int_high_hints: tuple[int, ...] = ()
        self.sequence_limit: int | None = None
        self.length_limits: tuple[int, ...] = ()
        # Symbolic dims beyond the batch axis (a "seq" dim_param) are the graph's own dynamic axes.
        self.model_dynamic_axes = {
            name: {axis: str(dim) for axis, dim in enumerate(dims) if axis > 0 and isinstance(dim, str) and dim}
            for name, dims in self.info.input_dims.items()
        }
        self._runner: OrtRunner | None = None

    @property
    def runner(self) -> OrtRunner:
        if self._runner is None:
            self._runner = OrtRunner(self.path, "cpu")
        return self._runner

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        runner = self.runner
        try:
            return runner.infer(feed)
        except Exception as exc:  # the graph is the model here: an input it cannot run is outside what it accepts
            raise ModelRejected(exc) from exc

    def timed_call(self, feed: Mapping[str, np.ndarray]) -> tuple[Callable[[], Any], str]:
        runner = self.runner
        return (lambda: runner.infer(feed)), "ONNX Runtime CPU provider (the model is an ONNX file)"

    def export(self, path: Path, dynamic_axes: Mapping[str, Mapping[int, str]], options: CheckOptions) -> ExportResult:
        return ExportResult("none (the model is an ONNX file)", path=self.path)

    def place(self, provider: str) -> str:
        return "ONNX Runtime CPU provider"

    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(Path(self.path).read_bytes()).hexdigest()

    def versions(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None


def prepare(model: Any, example_inputs: Any, options: CheckOptions) -> PreparedOnnxFile:
    return PreparedOnnxFile(os.fspath(model), example_inputs, options)
