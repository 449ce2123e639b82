"""Validators of the options a user passes (marker, call, command line, ini): each names the option and the fix.

Standard library only: this module loads with the plugin.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import OnnxParityUsageError
from .names import METRICS, VARIANTS

ToleranceValue = float | Mapping[str, float] | None
#: More generated input sets than this is a typo or a CI hang, not a test.
MAX_EXAMPLES = 5000
EXPORTERS = ("auto", "dynamo", "torchscript")
#: Edge cases by name; each can be switched off with ``edge_cases={"large": False}``.
EDGE_CASES = (
    "batches",
    "zeros",
    "ones",
    "constant",
    "sparse_zeros",
    "large",
    "tiny",
    "uniform",
    "lengths",
    "nonfinite",
)
#: ``edge_cases={"nonfinite": True}``: a divergence only non-finite inputs reveal fails the check (by default it
#: warns: ONNX Runtime's MaxPool and ReduceMax drop a NaN that torch propagates, so every max-pooling CNN differs).
NONFINITE_FAILS = "nonfinite:fails"
#: Edge cases that run only when asked for: ``edge_cases={"empty_batch": True}`` (batch 0, in a child process).
OPT_IN_EDGE_CASES = ("empty_batch",)


def _fail(option: str, problem: str, fix: str) -> OnnxParityUsageError:
    return OnnxParityUsageError(f"onnx_parity option {option!r}: {problem}. {fix}")


def _number(option: str, value: Any, fix: str = "Pass a non-negative, finite number.") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise _fail(option, f"got {value!r}", fix)
    return float(value)


def _integer(option: str, value: Any, low: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _fail(option, f"got {value!r}", fix)
    return value


def _tolerance(option: str, value: Any) -> ToleranceValue:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(name): _number(f"{option}[{name!r}]", tol) for name, tol in value.items()}
    return _number(option, value, "Pass a non-negative, finite number, or a dict of them per output name.")


def _names(option: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise _fail(option, f"got {value!r}", "Pass a list of strings, e.g. ['input_ids', 'attention_mask'].")
    if len(set(value)) != len(value):
        raise _fail(option, f"got {list(value)!r}, which repeats a name", "Give every tensor its own name.")
    return tuple(value)


def _sizes(option: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise _fail(option, f"got {value!r}", "Pass a non-empty tuple of positive integers, e.g. (1, 3, 16).")
    return tuple(sorted({_integer(option, v, 1, "Sizes are positive integers, e.g. (1, 3, 16).") for v in value}))


def _axis_sizes(value: Any) -> Mapping[str, tuple[int, ...]]:
    if not isinstance(value, Mapping):
        raise _fail("axis_sizes", f"got {value!r}", "Pass a dict like {'seq': (1, 7, 64, 512), 'batch': (1, 33)}.")
    return {str(axis): _sizes(f"axis_sizes[{axis!r}]", sizes) for axis, sizes in value.items()}


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
        for axis, _ in items:
            _integer("dynamic_axes", axis, 0, f"Axis {axis!r} of {name!r} must be a non-negative integer: 0, 1, ...")
        out[str(name)] = {axis: str(dim) for axis, dim in items}
    return out


def _input_ranges(value: Any) -> Mapping[str, tuple[float, float]]:
    if not isinstance(value, Mapping):
        raise _fail("input_ranges", f"got {type(value).__name__}", "Pass a dict like {'input_ids': (0, 30522)}.")
    out = {}
    for name, bounds in value.items():
        if (
            not isinstance(bounds, Sequence)
            or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
            or not bounds[0] < bounds[1]
        ):
            raise _fail(
                "input_ranges",
                f"entry {name!r} is {bounds!r}",
                "Give finite (low, high) with low < high; for integers high is exclusive, like range().",
            )
        out[str(name)] = (bounds[0], bounds[1])
    return out


def _provider_tolerances(value: Any) -> Mapping[str, Mapping[str, float]]:
    from ..providers.registry import parse_providers

    if not isinstance(value, Mapping):
        raise _fail("provider_tolerances", f"got {value!r}", "Pass {'tensorrt': {'atol': 1e-3, 'rtol': 1e-2}}.")
    out = {}
    for provider, tols in value.items():
        try:
            (short,) = parse_providers(str(provider), strict_names=True)
        except ValueError as exc:
            raise _fail("provider_tolerances", str(exc), "Key the dict by provider names such as 'tensorrt'.") from None
        if not isinstance(tols, Mapping) or not tols or not set(tols) <= {"atol", "rtol"}:
            raise _fail("provider_tolerances", f"entry {provider!r} is {tols!r}", "Use only the keys 'atol', 'rtol'.")
        out[short] = {k: _number(f"provider_tolerances[{provider!r}]", v) for k, v in tols.items()}
    return out


def _edge_cases(value: Any) -> frozenset[str]:
    """A dict switches edge cases on or off by name; a tuple names exactly the ones to run."""
    if isinstance(value, Mapping):
        asked = value.get("nonfinite")
        if asked is not None and not isinstance(asked, bool):
            raise _fail(
                "edge_cases",
                f"'nonfinite' is {asked!r}",
                "Pass True (a divergence only NaN/Inf inputs reveal fails the check), False (no NaN/Inf inputs) "
                "or leave it out (such a divergence is a warning).",
            )
        chosen = {name for name in EDGE_CASES if value.get(name, True)} | {n for n, on in value.items() if on}
        if asked:
            chosen.add(NONFINITE_FAILS)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        chosen = set(value)
    else:
        raise _fail("edge_cases", f"got {value!r}", "Pass a dict like {'large': False} or a tuple of names to run.")
    unknown = sorted(set(value) - set(EDGE_CASES) - set(OPT_IN_EDGE_CASES) - {NONFINITE_FAILS})
    if unknown:
        known = ", ".join((*EDGE_CASES, *OPT_IN_EDGE_CASES))
        raise _fail("edge_cases", f"unknown edge case(s) {unknown}", f"Known edge cases: {known}.")
    return frozenset(chosen)


def _examples(value: Any) -> int:
    fix = f"Pass 0 (fixed edge cases only) up to {MAX_EXAMPLES} generated input sets; more is a CI hang, not a test."
    count = _integer("examples", value, 0, fix)
    if count > MAX_EXAMPLES:
        raise _fail("examples", f"got {value!r}", fix)
    return count


def _variants(value: Any) -> tuple[str, ...]:
    names = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    fix = f"Pass a tuple of variant names from {', '.join(VARIANTS)} (on the command line: comma separated)."
    if not isinstance(names, Sequence) or not all(isinstance(v, str) for v in names):
        raise _fail("variants", f"got {value!r}", fix)
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise _fail("variants", f"unknown variant(s) {unknown}", fix)
    return tuple(dict.fromkeys(names))


def _variant_metrics(value: Any) -> dict[str, dict[str, Any]]:
    fix = (
        "Pass {variant: {metric: threshold}} or {variant: {output name: {metric: threshold}}}, e.g. "
        f"{{'int8-dynamic': {{'cosine': 0.999, 'top1': 0.99}}}}; metrics: {', '.join(METRICS)}."
    )

    def thresholds(where: str, given: Any) -> dict[str, float]:
        if not isinstance(given, Mapping):
            raise _fail("variant_metrics", f"{where} is {given!r}", fix)
        unknown = sorted(set(given) - set(METRICS))
        if unknown:
            raise _fail("variant_metrics", f"{where} names unknown metric(s) {unknown}", fix)
        out = {}
        for metric, limit in given.items():
            bad = isinstance(limit, bool) or not isinstance(limit, (int, float)) or math.isnan(limit)
            if bad or (metric != "snr_db" and not -1 <= limit <= 1):
                raise _fail("variant_metrics", f"{where}[{metric!r}] is {limit!r}", fix)
            out[metric] = float(limit)
        return out

    if not isinstance(value, Mapping):
        raise _fail("variant_metrics", f"got {value!r}", fix)
    out: dict[str, dict[str, Any]] = {}
    for variant, given in value.items():
        if variant not in VARIANTS:
            raise _fail("variant_metrics", f"unknown variant {variant!r}", fix)
        if not isinstance(given, Mapping):
            raise _fail("variant_metrics", f"{variant!r} maps to {given!r}", fix)
        metrics = {k: v for k, v in given.items() if not isinstance(v, Mapping)}
        out[variant] = thresholds(repr(variant), metrics)
        for output, limits in given.items():
            if isinstance(limits, Mapping):
                out[variant][output] = thresholds(f"{variant!r}[{output!r}]", limits)
    return out


def _time_budget(value: Any) -> float:
    seconds = _number("time_budget", value, "Pass a positive, finite number of seconds.")
    if seconds <= 0:
        raise _fail("time_budget", f"got {value!r}", "Pass a positive, finite number of seconds.")
    return seconds


def _flag(option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(option, f"got {value!r}", "Pass True or False.")
    return value


def _path(option: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise _fail(option, f"got {type(value).__name__}", "Pass the path of an .onnx file.")
    return None if value is None else os.fspath(value)


def _choice(option: str, choices: Sequence[str]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise _fail(option, f"got {value!r}", f"Use one of {', '.join(map(repr, choices))}.")
        return str(value)

    return check


def _string(option: str, fix: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _fail(option, f"got {value!r}", fix)
        return value

    return check


#: Each option a user may pass to ``onnx_parity(...)`` or to the marker, with its validator.
VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "atol": lambda v: _tolerance("atol", v),
    "rtol": lambda v: _tolerance("rtol", v),
    "batch_sizes": lambda v: _sizes("batch_sizes", v),
    "axis_sizes": _axis_sizes,
    "dynamic_axes": _dynamic_axes,
    "input_names": lambda v: _names("input_names", v),
    "output_names": lambda v: _names("output_names", v),
    "opset": lambda v: None if v is None else _integer("opset", v, 7, "Pass an ONNX opset number, 7 or newer."),
    "examples": _examples,
    "input_ranges": _input_ranges,
    "exporter": _choice("exporter", EXPORTERS),
    "seed": lambda v: _integer("seed", v, -(2**63), "Pass an integer."),
    "onnx_model": lambda v: _path("onnx_model", v),
    "signature": _string("signature", "Pass a SavedModel signature name such as 'serving_default'."),
    "provider_tolerances": _provider_tolerances,
    "noise_factor": lambda v: _number("noise_factor", v, "Pass a non-negative number (0: the fixed tolerance alone)."),
    "edge_cases": _edge_cases,
    "mask_holes": lambda v: _flag("mask_holes", v),
    "include_padding": lambda v: _flag("include_padding", v),
    "time_budget": _time_budget,
    "localize": lambda v: _flag("localize", v),
    "localize_budget": lambda v: _number("localize_budget", v, "Pass a non-negative number of seconds."),
    "benchmark": lambda v: _flag("benchmark", v),
    "benchmark_batch_sizes": lambda v: None if v is None else _sizes("benchmark_batch_sizes", v),
    "variants": _variants,
    "variant": lambda v: None if v is None else _choice("variant", VARIANTS)(v),
    "variant_metrics": _variant_metrics,
}
