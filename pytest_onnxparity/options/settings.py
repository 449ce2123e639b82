"""One place that resolves options: call kwargs > marker kwargs > command line > ini > defaults.

:class:`CheckOptions` are the options of one check (frozen); :class:`SessionPolicy` is what the whole
session decides (providers, strictness, where reports go). Nothing else reads the marker, the command
line or the ini file. Standard library only: this module loads with the plugin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import OnnxParityUsageError
from .names import NOISE_FACTOR
from .validate import EDGE_CASES, VALIDATORS, ToleranceValue

#: 1, a small odd size, and a wide batch well past the usual ones: rows past the first few are checked.
DEFAULT_BATCH_SIZES = (1, 3, 17)
DEFAULT_EXAMPLES = 20
#: Inputs larger than this (elements per input set) are refused before anything is allocated.
MAX_ELEMENTS = 50_000_000
#: Seconds of checking (export excluded) before the remaining generated sizes are skipped.
DEFAULT_TIME_BUDGET = 60.0


@dataclasses.dataclass(frozen=True)
class CheckOptions:
    """The resolved options of one parity check (see the README's option table)."""

    atol: ToleranceValue = None
    rtol: ToleranceValue = None
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    axis_sizes: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    opset: int | None = None
    examples: int = DEFAULT_EXAMPLES
    input_ranges: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    exporter: str = "auto"
    seed: int = 0
    onnx_model: str | None = None
    signature: str = "serving_default"
    provider_options: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    provider_tolerances: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    #: How many times the reference's own rounding error ONNX Runtime may be off (0: the fixed tolerance alone).
    noise_factor: float = NOISE_FACTOR
    edge_cases: frozenset[str] = frozenset(EDGE_CASES)
    #: Masks with holes (kept positions scattered), besides the right/left padding a tokenizer makes.
    mask_holes: bool = True
    #: Compare outputs at positions a mask marks as padding too (their values are undefined by default).
    include_padding: bool = False
    time_budget: float = DEFAULT_TIME_BUDGET
    #: On a failure, name the first divergent module/node and the stage that broke it, within this many seconds.
    localize: bool = True
    localize_budget: float = 30.0
    benchmark: bool = False
    benchmark_batch_sizes: tuple[int, ...] | None = None
    #: Variants built from the export and checked as items of their own (``test[cpu-int8-dynamic]``).
    variants: tuple[str, ...] = ()
    #: What ``onnx_model=`` is (a user's own fp16 / int8 / optimized file): the metric it is judged by.
    variant: str | None = None
    #: Thresholds by variant: ``{"int8-dynamic": {"cosine": 0.999, "logits": {"top1": 0.99}}}``.
    variant_metrics: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    #: Input magnitudes and float patterns generated (None: all of ``spec.SCALES`` / ``spec.FLOAT_PATTERNS``);
    #: an int8 variant narrows them, never the user.
    input_scales: tuple[float, ...] | None = None
    input_patterns: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class SessionPolicy:
    """What the session decides for every check: providers, strictness, reports, artifacts, benchmarks."""

    providers: tuple[str, ...] = ("cpu",)
    require_providers: bool = False
    strict: bool = False
    report: Path | None = None
    artifacts: Path | None = None
    #: Exports kept across sessions (--onnx-cache-dir); None: one export per model per session only.
    cache_dir: Path | None = None
    benchmark: bool = False
    benchmark_plot: Path | None = None
    #: False under pytest-xdist: timings need one process.
    benchmark_allowed: bool = True


#: Set by the plugin from the command line / ini only.
SESSION_ONLY = ("provider_options",)
#: They decide which items pytest collects, before the test runs.
COLLECTION_TIME = ("benchmark", "benchmark_batch_sizes")


def check_known(options: Mapping[str, Any], where: str) -> None:
    """Reject options this plugin does not know, listing the ones it does."""
    unknown = sorted(set(options) - set(VALIDATORS))
    if unknown:
        raise OnnxParityUsageError(
            f"{where}: unknown option(s) {', '.join(map(repr, unknown))}. "
            f"Valid options: {', '.join(sorted(VALIDATORS))}."
        )


def marker_options(args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The marker's options; positional arguments are refused (they would be silently meaningless)."""
    if args:
        raise OnnxParityUsageError(
            f"@pytest.mark.onnx_parity{tuple(args)!r}: the marker takes keyword options only, "
            "e.g. @pytest.mark.onnx_parity(atol=1e-3)."
        )
    check_known(kwargs, "@pytest.mark.onnx_parity(...)")
    return dict(kwargs)


def resolve(call: Mapping[str, Any], marker: Mapping[str, Any], session: Mapping[str, Any]) -> CheckOptions:
    """Merge the layers, highest first: call kwargs, marker kwargs, then session (CLI > ini, merged by the plugin)."""
    check_known(call, "onnx_parity(...)")
    check_known(marker, "@pytest.mark.onnx_parity(...)")
    collection_time = sorted(set(COLLECTION_TIME) & set(call))
    if collection_time:
        raise OnnxParityUsageError(
            f"onnx_parity(...): {', '.join(map(repr, collection_time))} decide which benchmark items pytest "
            "collects, before the test runs; set them on @pytest.mark.onnx_parity(...) or use --onnx-benchmark."
        )
    merged: dict[str, Any] = {k: v for k, v in session.items() if k in SESSION_ONLY}
    for layer in (session, marker, call):
        merged.update({k: VALIDATORS[k](v) for k, v in layer.items() if k in VALIDATORS})
    return CheckOptions(**merged)
