"""A stand-in execution provider for the plugin's own tests: always present, on every machine.

It runs ONNX Runtime's CPU provider under another name (registered through the public
``pytest_onnxparity_providers`` hook) and behaves like a real provider where the tests need it to:
it can decline op types (they fall back to CPU in its placement), compute in bf16, f16 or TF32 (the operands
of MatMul/Gemm/Conv rounded, and in bf16/f16 every computing node's result, as such a device does; not every value,
as the plugin's own emulation of that precision does), corrupt one node's output,
report itself unavailable for a given reason, and log like ONNX Runtime does at session creation.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Mapping
from typing import Any

from pytest_onnxparity.providers.precision import Precision
from pytest_onnxparity.providers.registry import ProviderDefinition, Unavailable

#: Where a reduced-precision device rounds: the operands its matrix units read (activations and weights) in every
#: precision, and in bf16 / f16 the results of the nodes that compute (TF32 keeps float32 results).
MATRIX = ("MatMul", "Gemm", "Conv")
ROUNDED = ("MatMul", "Gemm", "Conv", "Add", "Mul", "Tanh", "Sigmoid", "Relu")


def _rewrite(path: str, precision: str, corrupt: str | None, corrupt_by: float) -> str:
    """A copy of the model computed the way a ``precision`` device does (f32: as written) and/or with one node's
    output times ``corrupt_by``."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from pytest_onnxparity.graph.edits import rounding_nodes

    model = onnx.load(path)
    graph = model.graph
    typed = onnx.shape_inference.infer_shapes(model).graph
    floats = {v.name for v in [*typed.value_info, *typed.input, *typed.output] if v.type.tensor_type.elem_type == 1}
    floats |= {i.name for i in graph.initializer if i.data_type == 1}  # a device rounds float values only
    nodes = []
    for node in graph.node:
        if precision != "f32" and node.op_type in MATRIX:
            for index, name in enumerate(node.input[:2]):
                if name not in floats:
                    continue
                nodes += rounding_nodes(name, f"{node.output[0]}__in{index}", precision)
                node.input[index] = f"{node.output[0]}__in{index}"
        nodes.append(node)
        out = node.output[0]
        if node.name == corrupt:
            node.output[0] = f"{out}__raw"
            graph.initializer.append(numpy_helper.from_array(np.array(corrupt_by, np.float32), f"{out}__k"))
            nodes.append(onnx.helper.make_node("Mul", [f"{out}__raw", f"{out}__k"], [out], name=f"{node.name}__bad"))
        elif precision in ("bf16", "f16") and node.op_type in ROUNDED and out in floats:
            node.output[0] = f"{out}__raw"
            nodes += rounding_nodes(f"{out}__raw", out, precision)
    del graph.node[:]
    graph.node.extend(nodes)
    handle, rewritten = tempfile.mkstemp(suffix=".onnx", prefix="standin_")
    os.close(handle)
    onnx.save(model, rewritten)
    return rewritten


class _Flaky:
    """A session whose results on inputs past |x| > 6 are off by 0.01 on a coin flip: not deterministic."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._coin = random.Random(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def run(self, names: Any, feed: Mapping[str, Any], options: Any = None) -> Any:
        import numpy as np

        out = self._session.run(names, feed, options)
        large = any(np.abs(np.asarray(v, np.float64)).max(initial=0) > 6 for v in feed.values())
        if large and self._coin.random() < 0.5:
            out = [o + np.asarray(0.01, o.dtype) if o.dtype.kind == "f" else o for o in out]
        return out


def standin(
    name: str = "standin",
    *,
    declines: tuple[str, ...] = (),
    precision: str = "f32",
    corrupt: str | None = None,
    corrupt_by: float = 1.01,
    unavailable: Unavailable | None = None,
    logs: str = "",
    flaky: bool = False,
    corrupt_when_optimized: bool = False,
) -> ProviderDefinition:
    """A provider definition; ``precision`` (f32, bf16, f16, tf32) is its default; ``--onnx-provider-options=
    NAME:precision=f32`` forces f32. ``corrupt`` names a node whose output is multiplied by ``corrupt_by`` (1%
    off by default); ``corrupt_when_optimized`` only with optimizations on (a faulty graph rewrite)."""

    def ran_in(options: Mapping[str, str]) -> Precision:
        chosen = options.get("precision", precision)
        force = f"--onnx-provider-options={name}:precision=f32"
        return Precision(chosen, "the stand-in's default" if chosen == precision else "precision option", force)

    def create_session(path: str, options: Mapping[str, str], session_options: Any) -> Any:
        import onnxruntime as ort

        if logs:  # what a provider prints about the options it ignores, in ONNX Runtime's log format
            os.write(2, f"2026-01-01 00:00:00.0 [W:onnxruntime:, standin.cc:1 Create] {logs}\n".encode())
        computes_in = ran_in(options).name
        # a provider whose graph rewrites break the node ``corrupt`` (right with optimizations off)
        optimized = str(session_options.graph_optimization_level) != "GraphOptimizationLevel.ORT_DISABLE_ALL"
        broken = corrupt if optimized or not corrupt_when_optimized else None
        rewrite = computes_in != "f32" or broken
        chosen = _rewrite(path, computes_in, broken, corrupt_by) if rewrite else path
        session = ort.InferenceSession(chosen, session_options, providers=["CPUExecutionProvider"])
        return _Flaky(session) if flaky else session

    def attribute(node: str, op: str, ort_provider: str) -> str:
        return "cpu" if op in declines else name

    return ProviderDefinition(
        name=name,
        ort_name="CPUExecutionProvider",
        package="the tests' stand-in (tests/standin.py)",
        availability=lambda: unavailable,
        create_session=create_session,
        precision=ran_in,
        attribute_node=attribute,
    )
