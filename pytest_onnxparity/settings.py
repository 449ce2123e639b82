"""One place that resolves options: call kwargs > marker kwargs > command line > ini > defaults.

Everything downstream receives the frozen :class:`Settings`; nothing else reads the marker,
the command line or the ini file. Standard library only: this module loads with the plugin.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import OnnxParityUsageError
from .providers import parse_providers

EXPORTERS = ("auto", "dynamo", "torchscript")
DEFAULT_BATCH_SIZES = (1, 3, 8)
DEFAULT_EXAMPLES = 20
DEFAULT_SEED = 0

ToleranceValue = float | Mapping[str, float] | None


@dataclasses.dataclass(frozen=True)
class Settings:
    """The resolved options of one parity check (see the README's option table)."""

    atol: ToleranceValue = None
    rtol: ToleranceValue = None
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    opset: int | None = None
    examples: int = DEFAULT_EXAMPLES
    input_ranges: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    exporter: str = "auto"
    seed: int = DEFAULT_SEED
    onnx_model: str | None = None
    signature: str = "serving_default"
    provider_options: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    provider_tolerances: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    strict: bool = False
    benchmark: bool = False
    benchmark_batch_sizes: tuple[int, ...] | None = None


#: Options a user may pass to ``onnx_parity(...)`` or to the marker.
USER_OPTIONS = frozenset(
    {
        "atol",
        "rtol",
        "batch_sizes",
        "dynamic_axes",
        "input_names",
        "output_names",
        "opset",
        "examples",
        "input_ranges",
        "exporter",
        "seed",
        "onnx_model",
        "signature",
        "provider_tolerances",
        "benchmark",
        "benchmark_batch_sizes",
    }
)


def _fail(option: str, problem: str, fix: str) -> OnnxParityUsageError:
    return OnnxParityUsageError(f"onnx_parity option {option!r}: {problem}. {fix}")


def _positive_int(option: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(option, f"got {value!r}", "Pass a positive integer.")
    return value


def _tolerance(option: str, value: Any) -> ToleranceValue:
    if value is None:
        return None
    if isinstance(value, Mapping):
        out = {}
        for name, tol in value.items():
            out[str(name)] = _non_negative_float(f"{option}[{name!r}]", tol)
        return out
    return _non_negative_float(option, value)


def _non_negative_float(option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise _fail(option, f"got {value!r}", "Pass a non-negative number, or a dict of them per output name.")
    return float(value)


def _names(option: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise _fail(option, f"got {value!r}", "Pass a list of strings, e.g. ['input_ids', 'attention_mask'].")
    return tuple(value)


def _batch_sizes(option: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise _fail(option, f"got {value!r}", "Pass a non-empty tuple of positive integers, e.g. (1, 3, 16).")
    return tuple(sorted({_positive_int(option, v) for v in value}))


def _dynamic_axes(value: Any) -> Mapping[str, Mapping[int, str]] | None:
    """Accept torch.onnx's form: ``{name: {axis: dim_name}}`` or ``{name: [axis, ...]}``."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail(
            "dynamic_axes", f"got {type(value).__name__}", "Pass a dict like {'input_ids': {0: 'batch', 1: 'seq'}}."
        )
    out: dict[str, dict[int, str]] = {}
    for name, axes in value.items():
        if isinstance(axes, Mapping):
            items = list(axes.items())
        elif isinstance(axes, Sequence) and not isinstance(axes, str):
            items = [(axis, f"{name}_dim{axis}") for axis in axes]
        else:
            raise _fail(
                "dynamic_axes", f"entry {name!r} is {axes!r}", "Give each input a dict {axis: name} or a list of axes."
            )
        per_input: dict[int, str] = {}
        for axis, dim_name in items:
            if isinstance(axis, bool) or not isinstance(axis, int) or axis < 0:
                raise _fail("dynamic_axes", f"axis {axis!r} of {name!r} is not a non-negative integer", "Use 0, 1, ...")
            per_input[axis] = str(dim_name)
        out[str(name)] = per_input
    return out


def _input_ranges(value: Any) -> Mapping[str, tuple[float, float]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail("input_ranges", f"got {type(value).__name__}", "Pass a dict like {'input_ids': (0, 30522)}.")
    out = {}
    for name, bounds in value.items():
        if (
            not isinstance(bounds, Sequence)
            or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
            or not bounds[0] < bounds[1]
        ):
            raise _fail(
                "input_ranges",
                f"entry {name!r} is {bounds!r}",
                "Give (low, high) with low < high; for integers high is exclusive, like range().",
            )
        out[str(name)] = (bounds[0], bounds[1])
    return out


def _provider_tolerances(value: Any) -> Mapping[str, Mapping[str, float]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail("provider_tolerances", f"got {value!r}", "Pass {'tensorrt': {'atol': 1e-3, 'rtol': 1e-2}}.")
    out = {}
    for provider, tols in value.items():
        try:
            (short,) = parse_providers(str(provider))
        except ValueError as exc:
            raise _fail("provider_tolerances", str(exc), "Key the dict by provider names such as 'tensorrt'.") from None
        if not isinstance(tols, Mapping) or not set(tols) <= {"atol", "rtol"}:
            raise _fail("provider_tolerances", f"entry {provider!r} is {tols!r}", "Use only the keys 'atol', 'rtol'.")
        out[short] = {k: _non_negative_float(f"provider_tolerances[{provider!r}]", v) for k, v in tols.items()}
    return out


def _validate(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check each option's type and normalise it; raise a message naming the option and the fix."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in ("atol", "rtol"):
            out[key] = _tolerance(key, value)
        elif key in ("batch_sizes", "benchmark_batch_sizes"):
            out[key] = None if value is None and key == "benchmark_batch_sizes" else _batch_sizes(key, value)
        elif key == "dynamic_axes":
            out[key] = _dynamic_axes(value)
        elif key in ("input_names", "output_names"):
            out[key] = _names(key, value)
        elif key in ("opset",):
            out[key] = None if value is None else _positive_int(key, value)
        elif key == "examples":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _fail(key, f"got {value!r}", "Pass 0 (fixed edge cases only) or a positive integer.")
            out[key] = value
        elif key == "seed":
            if isinstance(value, bool) or not isinstance(value, int):
                raise _fail(key, f"got {value!r}", "Pass an integer.")
            out[key] = value
        elif key == "input_ranges":
            out[key] = _input_ranges(value)
        elif key == "exporter":
            if value not in EXPORTERS:
                raise _fail(key, f"got {value!r}", f"Use one of {', '.join(map(repr, EXPORTERS))}.")
            out[key] = value
        elif key == "onnx_model":
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise _fail(key, f"got {type(value).__name__}", "Pass the path of an .onnx file.")
            out[key] = None if value is None else os.fspath(value)
        elif key == "signature":
            if not isinstance(value, str):
                raise _fail(key, f"got {value!r}", "Pass a SavedModel signature name such as 'serving_default'.")
            out[key] = value
        elif key == "provider_tolerances":
            out[key] = _provider_tolerances(value)
        elif key in ("benchmark", "strict"):
            out[key] = bool(value)
        elif key == "provider_options":
            out[key] = dict(value)
        else:  # pragma: no cover - guarded by the callers' unknown-option check
            raise AssertionError(key)
    return out


def check_known(options: Mapping[str, Any], where: str) -> None:
    """Reject options this plugin does not know, listing the ones it does."""
    unknown = sorted(set(options) - USER_OPTIONS)
    if unknown:
        raise OnnxParityUsageError(
            f"{where}: unknown option(s) {', '.join(map(repr, unknown))}. "
            f"Valid options: {', '.join(sorted(USER_OPTIONS))}."
        )


def resolve(call: Mapping[str, Any], marker: Mapping[str, Any], session: Mapping[str, Any]) -> Settings:
    """Merge the layers, highest first: call kwargs, marker kwargs, then session (CLI > ini, merged by the plugin)."""
    check_known(call, "onnx_parity(...)")
    check_known(marker, "@pytest.mark.onnx_parity(...)")
    collection_time = sorted({"benchmark", "benchmark_batch_sizes"} & set(call))
    if collection_time:
        raise OnnxParityUsageError(
            f"onnx_parity(...): {', '.join(map(repr, collection_time))} decide which benchmark items pytest "
            "collects, before the test runs; set them on @pytest.mark.onnx_parity(...) or use --onnx-benchmark."
        )
    merged: dict[str, Any] = {}
    for layer in (session, marker, call):
        merged.update(_validate(layer))
    return Settings(**merged)
