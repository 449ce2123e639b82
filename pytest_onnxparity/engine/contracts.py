"""Shape contracts: an axis declared dynamic must be dynamic in the ONNX graph and in the model itself.

A violation is a failure that names the axis and the likely cause; it is never a silent skip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ModelRejected, OnnxParityError
from ..judge.kinds import FailureKind
from ..report.parity import Failure

if TYPE_CHECKING:
    import numpy as np

    from ..graph.info import GraphInfo
    from .probe import Probe
    from .record import Record

_CAUSE = (
    "likely causes: a Python int() of a tensor's shape in forward(), a shape the tracer recorded as a constant, "
    "or an export without this dynamic axis"
)


def _before_running(message: str) -> Failure:
    return Failure(
        FailureKind.SHAPE_CONTRACT, message, {}, "none: found in the graph's declared interface, before running", {}
    )


def graph_fixes_dynamic_axes(info: GraphInfo, dynamic_axes: Mapping[str, Mapping[int, str]]) -> dict[str, str]:
    """Dims declared dynamic that the ONNX graph fixes to a number: {dim name: what the graph says}."""
    return {
        dim: f"input {name!r} axis {axis} ({dim!r}) is fixed at {info.input_dims[name][axis]}"
        for name, axes in dynamic_axes.items()
        for axis, dim in axes.items()
        if name in info.input_dims
        and axis < len(info.input_dims[name])
        and isinstance(info.input_dims[name][axis], int)
    }


def _fixed_in_graph(probe: Probe, fixed: Mapping[str, str]) -> Failure:
    """The graph fixes a dynamic dim: does the model itself take another size there (then the export is at
    fault) or not (then the axis is not dynamic in the model)?"""
    from ..inputs import recipes as inputs
    from ..inputs.spec import Recipe

    sizes, _ = inputs.dim_sizes(probe.specs)
    other = Recipe(
        "another size of the fixed axes",
        tuple((d, n + 1 if d in fixed else n) for d, n in sizes.items()),
        "normal",
        1.0,
        98,
    )
    try:
        probe.reference.infer(inputs.materialize(other, probe.specs, probe.example))
    except ModelRejected as exc:
        probe.record.rejected[other] = str(exc)[:300]
        return model_rejects_dynamic_sizes(
            probe.record, {d: n for d, n in sizes.items() if d in fixed}
        ) or _before_running("; ".join(fixed.values()))
    return _before_running(
        f"the ONNX graph fixes dimension(s) that were declared dynamic, though the model takes other sizes there: "
        f"{'; '.join(fixed.values())} ({_CAUSE}). Fix: re-export with those axes dynamic, or pass "
        "dynamic_axes=... naming only the axes that really vary (dynamic_axes={} for none)."
    )


def output_batch_fixed(
    info: GraphInfo, example_outputs: Mapping[str, np.ndarray], wider_outputs: Mapping[str, np.ndarray] | None
) -> Failure | None:
    """An output whose batch axis follows the model's batch but that the graph declares with a fixed size.

    ``wider_outputs`` are the reference's outputs one batch wider than the example (None when not available).
    """
    if wider_outputs is None:
        return None
    fixed = [
        f"output {graph_name!r} axis 0 is fixed at {info.output_dims[graph_name][0]} in the graph but follows the "
        f"batch in the model ({example.shape[0]} -> {wider_outputs[name].shape[0]})"
        for (name, example), graph_name in zip(example_outputs.items(), info.outputs)
        if info.output_dims.get(graph_name)
        and isinstance(info.output_dims[graph_name][0], int)
        and example.ndim
        and wider_outputs[name].shape[0] != example.shape[0]
    ]
    if not fixed:
        return None
    return _before_running(f"{'; '.join(fixed)} ({_CAUSE}). Fix: re-export with the output's batch axis dynamic.")


def model_rejects_dynamic_sizes(record: Record, example_sizes: Mapping[str, int]) -> Failure | None:
    """The model itself refuses every size but the example's on an axis declared dynamic."""
    for dim, size in example_sizes.items():
        accepted = {r.dims_dict().get(dim) for r in record.checked} - {size, None}
        refused = {r: why for r, why in record.rejected.items() if r.dims_dict().get(dim, size) != size}
        if refused and not accepted:
            first, why = next(iter(refused.items()))
            sizes = sorted({r.dims_dict()[dim] for r in refused})
            return Failure(
                FailureKind.SHAPE_CONTRACT,
                f"axis {dim!r} is declared dynamic but the model itself rejects every size except the example's "
                f"{size}: it raised on {dim}={sizes} (first: {why}). Fix: pass dynamic_axes=... without this axis "
                "(dynamic_axes={} for none) if it is fixed by design, or make the model accept other sizes (a "
                "hard-coded reshape/view to the example's size is the usual cause).",
                first.to_dict(),
                first.describe(),
                {},
            )
    return None


def before_running(probe: Probe, info: GraphInfo, dynamic_axes: Mapping[str, Mapping[int, str]]) -> Failure | None:
    """The checks that need no ONNX Runtime run: the graph's declared dims, a deterministic reference, and an
    output batch axis the graph fixes (the reference is run one batch wider to tell)."""
    from ..inputs import recipes as inputs
    from ..inputs.spec import Recipe

    fixed = graph_fixes_dynamic_axes(info, dynamic_axes)
    if fixed:
        return _fixed_in_graph(probe, fixed)
    example = inputs.example_recipe(probe.specs)
    repeated = probe.reference_known(example)  # an earlier item of the model ran the example twice already
    first = probe.reference_on(example)
    second = first if repeated else probe.reference.infer(probe.example)
    for name, value in first.items():
        if value.tobytes() != second[name].tobytes():
            raise OnnxParityError(
                f"the model is not deterministic: two calls on the same example gave different values of output "
                f"{name!r}. Random ops (dropout in training mode, torch.rand) or state updated in forward (a counter, "
                "running statistics) make any comparison meaningless; make forward a pure function of its inputs."
            )
    sizes, batch = inputs.dim_sizes(probe.specs)
    if not batch or not any(dims and isinstance(dims[0], int) for dims in info.output_dims.values()):
        return None
    wider = Recipe(
        "one wider batch", tuple((d, n + 1 if d in batch else n) for d, n in sizes.items()), "normal", 1.0, 99
    )
    try:
        wider_outputs = probe.reference_on(wider)
    except ModelRejected:
        return None  # the model's own batch contract is judged later, over every batch size
    return output_batch_fixed(info, first, wider_outputs)


def declared_output_dims(info: GraphInfo, shapes: Mapping[str, set[tuple[int, ...]]]) -> list[str]:
    """Output dims the graph declares fixed while the model's outputs vary there (a warning: ONNX Runtime
    computes the right shape, but consumers that trust the declared one, such as TensorRT, do not)."""
    out = []
    for seen, graph_name in zip(shapes.values(), info.outputs):
        for axis, declared in enumerate(info.output_dims.get(graph_name, [])):
            sizes = sorted({shape[axis] for shape in seen if axis < len(shape)})
            if isinstance(declared, int) and sizes and sizes != [declared]:
                out.append(
                    f"the ONNX graph declares output {graph_name!r} axis {axis} as {declared} but the model returns "
                    f"{sizes[0]}..{sizes[-1]} there ({_CAUSE}); runtimes that trust declared shapes will break"
                )
    return out
