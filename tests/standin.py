"""A stand-in execution provider for the plugin's own tests: always present, on every machine.

It runs ONNX Runtime's CPU provider under another name (registered through the public
``pytest_onnxparity_providers`` hook) and behaves like a real provider where the tests need it to:
it can decline op types (they fall back to CPU in its placement), compute in bf16 (every float
MatMul/Gemm/Conv/Add result rounded to bfloat16, as a bf16 device does), corrupt one node's output,
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

#: The ops whose float results a bf16 device rounds (where the arithmetic happens).
ROUNDED = ("MatMul", "Gemm", "Conv", "Add", "Mul", "Tanh", "Sigmoid", "Relu")


def _rewrite(path: str, bf16: bool, corrupt: str | None) -> str:
    """A copy of the model with bf16 rounding after each computing node and/or one node's output x1.01."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(path)
    graph = model.graph
    nodes = []
    for node in graph.node:
        nodes.append(node)
        if (bf16 and node.op_type in ROUNDED) or node.name == corrupt:
            out = node.output[0]
            node.output[0] = f"{out}__raw"
            if node.name == corrupt:
                graph.initializer.append(numpy_helper.from_array(np.array(1.01, np.float32), f"{out}__k"))
                corrupted = helper.make_node("Mul", [f"{out}__raw", f"{out}__k"], [out], name=f"{node.name}__corrupt")
                nodes.append(corrupted)
            else:
                nodes += [
                    helper.make_node("Cast", [f"{out}__raw"], [f"{out}__bf16"], to=TensorProto.BFLOAT16),
                    helper.make_node("Cast", [f"{out}__bf16"], [out], to=TensorProto.FLOAT),
                ]
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
    unavailable: Unavailable | None = None,
    logs: str = "",
    flaky: bool = False,
    corrupt_when_optimized: bool = False,
) -> ProviderDefinition:
    """A provider definition; ``precision`` is its default; ``--onnx-provider-options=NAME:precision=f32`` forces
    f32. ``corrupt`` names a node whose output is off by 1%; ``corrupt_when_optimized`` only with optimizations
    on (a faulty graph rewrite)."""

    def ran_in(options: Mapping[str, str]) -> Precision:
        chosen = options.get("precision", precision)
        force = f"--onnx-provider-options={name}:precision=f32"
        return Precision(chosen, "the stand-in's default" if chosen == precision else "precision option", force)

    def create_session(path: str, options: Mapping[str, str], session_options: Any) -> Any:
        import onnxruntime as ort

        if logs:  # what a provider prints about the options it ignores, in ONNX Runtime's log format
            os.write(2, f"2026-01-01 00:00:00.0 [W:onnxruntime:, standin.cc:1 Create] {logs}\n".encode())
        bf16 = ran_in(options).name == "bf16"
        # a provider whose graph rewrites break the node ``corrupt`` (right with optimizations off)
        optimized = str(session_options.graph_optimization_level) != "GraphOptimizationLevel.ORT_DISABLE_ALL"
        broken = corrupt if optimized or not corrupt_when_optimized else None
        chosen = _rewrite(path, bf16, broken) if bf16 or broken else path
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
