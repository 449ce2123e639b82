"""The models users ship, built from the check's export with the tools users use:

- ``optimized``: ONNX Runtime's offline graph optimization (``optimized_model_filepath``, level ``extended``:
  portable across machines; ``all`` adds layout changes for this CPU only);
- ``simplified``: onnxslim (constant folding, dead code, fusions);
- ``fp16``: ONNX Runtime's float16 converter, inputs and outputs kept float32 (``keep_io_types``);
- ``int8-dynamic``: ONNX Runtime's ``quantize_dynamic`` (int8 weights, activations quantized at run time);
- ``int8-static``: ONNX Runtime's ``quantize_static`` (QDQ), calibrated on the plugin's own generated inputs.

Lossless variants keep the normal pass rule; fp16 gets fp16 tolerances; int8 is judged by ``metrics.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import adapters
from ..errors import OnnxParityError
from ..graph import info as graph
from ..inputs.spec import LIKE_EXAMPLE, SCALES
from ..options.names import QUANTIZED_VARIANTS

if TYPE_CHECKING:
    import numpy as np

    from ..adapters import PreparedModel
    from ..options.settings import CheckOptions
    from .exported import ExportedModel, Exporter

#: Calibration input sets for int8-static (the example, every batch size, then generated ones).
CALIBRATION_SETS = 16
#: The edge cases an int8 variant is checked on: inputs like the ones it was calibrated on (the example's own
#: distribution) at every batch size and sequence length; magnitudes and patterns far from them (x1e3, all
#: positive, constant rows) saturate or vanish in fixed int8 ranges by design.
INT8_EDGE_CASES = frozenset({"batches", "lengths"})
#: The largest input magnitude an fp16 variant is checked at.
FP16_SCALE = 10.0


class VariantUnavailable(OnnxParityError):
    """The tool that builds a variant is not installed: the item is skipped, naming what to install."""


def check_options(options: CheckOptions, variant: str | None) -> CheckOptions:
    """An int8 variant is checked (and int8-static calibrated) on inputs like the example: normal values with the
    example's mean and spread, at every batch size and length; other patterns and magnitudes are out of the
    distribution it was calibrated for. An fp16 variant is checked on magnitudes up to x10."""
    if variant == "fp16":  # x1e3 inputs take most networks past float16's range by design
        scales = tuple(s for s in (options.input_scales or SCALES) if s <= FP16_SCALE)
        return dataclasses.replace(options, edge_cases=options.edge_cases - {"large"}, input_scales=scales)
    if variant not in QUANTIZED_VARIANTS:
        return options
    return dataclasses.replace(
        options,
        edge_cases=options.edge_cases & INT8_EDGE_CASES,
        input_scales=(1.0,),
        input_patterns=(LIKE_EXAMPLE,),
    )


def to_build(options: CheckOptions) -> str | None:
    """The variant the plugin builds for a check: ``variant=``, unless it names what ``onnx_model=`` is."""
    return options.variant if options.onnx_model is None else None


def with_variant(exporter: Exporter, variant: str | None) -> Exporter:
    """``exporter``, then the ``variant`` built from what it returns (the engine's default, outside a session)."""
    if variant is None:
        return exporter

    def export(
        prepared: PreparedModel, axes: Mapping[str, Mapping[int, str]], options: CheckOptions, workdir: Path
    ) -> ExportedModel:
        return build(prepared, exporter(prepared, axes, options, workdir), variant, options, axes, workdir)

    return export


@contextlib.contextmanager
def crash_named(exported: ExportedModel, provider: str) -> Iterator[None]:
    """A variant's session that crashes ONNX Runtime (in the worker process: a segmentation fault creating the
    session of an fp16 LSTM, for one) is ONNX Runtime's failure on a graph another tool wrote: say so."""
    from ..runners.onnxruntime import require
    from ..runners.worker import Crashed

    try:
        yield
    except Crashed as exc:
        if exported.variant is None:
            raise
        raise OnnxParityError(
            f"the {exported.variant} variant ({exported.path}) does not run in ONNX Runtime "
            f"{require().__version__} on {provider}: {exc}. The export itself is checked by the test's own item; "
            "this is ONNX Runtime's failure on the variant's graph (report it upstream with that file)."
        ) from None


def build(
    prepared: PreparedModel,
    base: ExportedModel,
    variant: str,
    options: CheckOptions,
    axes: Mapping[str, Mapping[int, str]],
    workdir: Path,
) -> ExportedModel:
    """The ``variant`` of ``base`` as a new :class:`ExportedModel`, written to ``workdir/variant/``."""
    start = time.perf_counter()
    folder = workdir / variant
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    try:
        tool = _BUILDERS[variant](prepared, base, options, axes, path)
    except VariantUnavailable:
        raise
    except Exception as exc:
        raise OnnxParityError(
            f"building the {variant} variant of {base.path} failed: {type(exc).__name__}: {exc}"[:1500]
        ) from exc
    info = graph.inspect(path, user_file=False, validate=False)
    warnings = base.warnings
    if variant.startswith("int8") and not _quantized(info.op_types):
        warnings += (
            f"the {variant} variant has no quantized node ({tool} left every op in float32): it passes as the "
            "export does, and nothing in int8 was checked",
        )
    return dataclasses.replace(
        base,
        warnings=warnings,
        path=str(path),
        exporter=f"{base.exporter}, then {tool}",
        graph=info,
        seconds=base.seconds + time.perf_counter() - start,
        variant=variant,
        base_path=base.path,
    )


def _quantized(ops: frozenset[str]) -> bool:
    """Whether a graph of ``ops`` has a node of ONNX Runtime's quantized kernels (QDQ pairs, *Integer, QLinear*, Q*)."""
    return any(
        "Quant" in op or op.endswith("Integer") or op.startswith(("QLinear", "QGemm", "QAttention")) for op in ops
    )


def _optimized(prepared: Any, base: ExportedModel, options: CheckOptions, axes: Any, path: Path) -> str:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(path)
    # weights beside the new file (by default ORT keeps the export's external-data references, relative paths
    # that do not resolve from the variant's folder)
    so.add_session_config_entry("session.optimized_model_external_initializers_file_name", f"{path.name}.data")
    ort.InferenceSession(base.path, so, providers=["CPUExecutionProvider"])
    return "onnxruntime optimized_model_filepath, level extended"


def _simplified(prepared: Any, base: ExportedModel, options: CheckOptions, axes: Any, path: Path) -> str:
    import onnx

    try:
        import onnxslim
    except ImportError:
        raise VariantUnavailable(
            "the simplified variant needs onnxslim: pip install onnxslim (or 'pytest-onnxparity[variants]')"
        ) from None
    onnx.save(onnxslim.slim(onnx.load(base.path)), str(path))
    return f"onnxslim {getattr(onnxslim, '__version__', '')}".strip()


def _fp16(prepared: Any, base: ExportedModel, options: CheckOptions, axes: Any, path: Path) -> str:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(base.path), keep_io_types=True), str(path))
    return "onnxruntime float16 converter, keep_io_types=True"


def _int8_dynamic(prepared: Any, base: ExportedModel, options: CheckOptions, axes: Any, path: Path) -> str:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(_quantizer_input(base.path, path.parent), str(path), weight_type=QuantType.QInt8)
    return "onnxruntime quantize_dynamic, int8 weights, per tensor"


def _int8_static(
    prepared: PreparedModel,
    base: ExportedModel,
    options: CheckOptions,
    axes: Mapping[str, Mapping[int, str]],
    path: Path,
) -> str:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from .interface import match

    feed_names = match(prepared.example, base.graph, user_file=not base.names_are_ours).feed_names
    feeds = calibration_feeds(prepared, check_options(options, "int8-static"), axes, feed_names, CALIBRATION_SETS)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._left = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._left, None)

    quantize_static(
        _quantizer_input(base.path, path.parent),
        str(path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=False,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    return f"onnxruntime quantize_static, QDQ int8, per tensor, calibrated on {len(feeds)} generated input sets"


def calibration_feeds(
    prepared: PreparedModel,
    options: CheckOptions,
    axes: Mapping[str, Mapping[int, str]],
    feed_names: Mapping[str, str],
    count: int,
) -> list[dict[str, np.ndarray]]:
    """At least ``count`` input sets like the ones an int8 variant is checked on, keyed by graph input (``feed_names``:
    graph input -> model input, as the check feeds them): the example, every batch size and axis walk, then
    generated ones like the example (an int8-static variant's calibration data)."""
    from ..inputs.plan import axis_limits, axis_plan
    from ..inputs.recipes import dim_sizes, edge_recipes, materialize
    from ..inputs.spec import Recipe, build_specs

    specs = build_specs(prepared.example, axes, options, prepared.int_high_hints)
    plan = axis_plan(specs, options, axis_limits(specs, prepared.sequence_limit, adapters.length_limits(prepared)))
    recipes = edge_recipes(specs, options, plan)
    sizes, _ = dim_sizes(specs)
    recipes += [
        Recipe("calibration", tuple(sizes.items()), LIKE_EXAMPLE, 1.0, 5000 + k)
        for k in range(max(0, count - len(recipes)))
    ]
    special = adapters.special_ids(prepared)
    feeds = [materialize(r, specs, prepared.example, special=special) for r in recipes]
    return [{graph_name: feed[model_name] for graph_name, model_name in feed_names.items()} for feed in feeds]


def _quantizer_input(path: str, folder: Path) -> str:
    """The export as ONNX Runtime's quantizer takes it: one file, without the shapes the exporter recorded for
    its weights (the quantizer transposes a Gemm's weight under its own name and its shape check then fails)."""
    import onnx

    model = onnx.load(path)
    weights = {init.name for init in model.graph.initializer}
    kept = [v for v in model.graph.value_info if v.name not in weights]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    out = folder / "quantizer_input.onnx"
    onnx.save(model, str(out))
    return str(out)


_BUILDERS = {
    "optimized": _optimized,
    "simplified": _simplified,
    "fp16": _fp16,
    "int8-dynamic": _int8_dynamic,
    "int8-static": _int8_static,
}
