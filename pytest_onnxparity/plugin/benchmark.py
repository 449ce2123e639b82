"""The pytest-benchmark bridge: latency of the framework and of ONNX Runtime per provider and batch size.

pytest-benchmark allows one benchmark per test, so the plugin generates one item per (runtime, batch
size) — ids like ``[bench-framework-b1]``, ``[bench-cpu-b16]`` — and the ``onnx_parity`` call in such an
item times that one runtime. Timing rules: the ONNX Runtime session and the input are built outside the
timed region; the input is fresh (not one the parity check used); a few warm-up runs come first; the
framework and ONNX Runtime use the same number of threads; device work is synchronised before the clock
stops.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import OnnxParityError, OnnxParityUsageError
from ..report.latency import Measurement
from ..report.parity import ParityMismatch
from .items import model_key

if TYPE_CHECKING:
    from ..adapters import PreparedModel
    from ..engine.check import CheckResult
    from ..options.settings import CheckOptions, SessionPolicy
    from ..report.parity import ParityReport

WARMUP_RUNS = 5
#: Seed of the benchmark input: far from the seeds the parity check draws from.
BENCHMARK_SEED = 2**31 - 7


@dataclasses.dataclass(frozen=True)
class BenchmarkCase:
    """What one generated benchmark item times."""

    runtime: str  # "framework" or a provider short name
    batch_size: int
    #: The variant timed on the provider (None: the export itself).
    variant: str | None = None

    @property
    def label(self) -> str:
        """``cpu``, ``cpu-int8-dynamic``: what is timed."""
        return f"{self.runtime}-{self.variant}" if self.variant else self.runtime

    @property
    def id(self) -> str:
        return f"bench-{self.label}-b{self.batch_size}"


@dataclasses.dataclass
class BenchmarkState:
    """Per session: parity results to reuse and the medians measured, for speedups, the summary and the plot."""

    parity: dict[tuple[str, str, str | None], tuple[str, ParityReport]] = dataclasses.field(default_factory=dict)
    measurements: list[Measurement] = dataclasses.field(default_factory=list)


def require_pytest_benchmark(config: pytest.Config) -> None:
    if not config.pluginmanager.hasplugin("benchmark"):
        raise pytest.UsageError("--onnx-benchmark needs pytest-benchmark: pip install 'pytest-onnxparity[benchmark]'")


def cases(batch_sizes: tuple[int, ...], providers: list[str], variants: tuple[str, ...] = ()) -> list[BenchmarkCase]:
    """Framework first, then each provider, then each variant on each provider, per batch size (framework
    medians feed the speedups)."""
    return [
        BenchmarkCase(runtime, b, variant)
        for b in batch_sizes
        for runtime, variant in [("framework", None), *[(p, v) for v in (None, *variants) for p in providers]]
    ]


def collection_batch_sizes(
    policy: SessionPolicy, config: pytest.Config, options_for: Callable[[Any], CheckOptions], definition: Any
) -> tuple[int, ...]:
    """Batch sizes to benchmark this test at (marker > command line > ini), or () for none; ``options_for``
    resolves a test's options."""
    if not policy.benchmark_allowed:
        return ()
    marker = definition.get_closest_marker("onnx_parity")
    wanted = policy.benchmark or bool(marker is not None and marker.kwargs.get("benchmark"))
    if not wanted:
        return ()
    try:
        options = options_for(definition)
    except OnnxParityError:
        return ()  # the test itself fails with the message when it runs
    if not policy.benchmark:
        require_pytest_benchmark(config)
    return options.benchmark_batch_sizes or tuple(sorted({1, max(options.batch_sizes)}))


def run(
    state: BenchmarkState,
    check: Callable[[PreparedModel, CheckOptions, str, Path, Any, str | None], CheckResult],
    request: pytest.FixtureRequest,
    prepared: PreparedModel,
    options: CheckOptions,
    provider: str,
    case: BenchmarkCase,
    workdir: Path,
) -> ParityReport:
    """Time one runtime at one batch size; returns the parity report of the same model and provider (``check`` runs
    the parity check when its item did not run first)."""
    from ..inputs import recipes as inputs
    from ..inputs import spec
    from ..runners.onnxruntime import OrtRunner

    key = model_key(request.node)
    cached = state.parity.get((key, provider, case.variant))
    if cached is None:  # the parity item did not run first (deselected, or run alone): check parity here
        result = check(prepared, options, provider, workdir, request.node, case.variant)
        if not result.report.passed:
            raise ParityMismatch(result.report)
        cached = state.parity[(key, provider, case.variant)] = (result.exported.path, result.report)
    onnx_path, report = cached
    axes = spec.resolve_dynamic_axes(prepared.example, options, prepared.model_dynamic_axes)
    specs = spec.build_specs(prepared.example, axes, options, prepared.int_high_hints)
    sizes, batch_dims = inputs.dim_sizes(specs)
    if case.batch_size != 1 and not batch_dims:
        raise OnnxParityUsageError(
            f"benchmark batch size {case.batch_size} needs a dynamic batch axis; this check has none "
            "(dynamic_axes). Set benchmark_batch_sizes=(1,) or declare the batch axis."
        )
    dims = tuple((d, case.batch_size if d in batch_dims else n) for d, n in sizes.items())
    feed = inputs.materialize(spec.Recipe("benchmark", dims, "normal", 1.0, BENCHMARK_SEED), specs, prepared.example)
    threads = _threads(prepared.name)
    info: dict[str, Any] = {
        "model": key,
        "runtime": prepared.name
        if case.runtime == "framework"
        else case.runtime + (f"-{case.variant}" if case.variant else ""),
        "batch_size": case.batch_size,
        "opset": report.opset,
        "threads": threads,
        "warmup_runs": WARMUP_RUNS,
        "versions": report.versions,
    }
    if case.runtime == "framework":
        info["device"] = prepared.place(provider)
        call, info["timed"] = prepared.timed_call(feed)
    else:
        runner = OrtRunner(
            onnx_path, case.runtime, options.provider_options.get(case.runtime), threads=threads, spinning=True
        )
        info.update(
            provider=runner.session.get_providers()[0],
            session_options=runner.session_options(),
            precision=runner.precision.name,
            timed="InferenceSession.run, outputs to host numpy",
        )
        onnx_feed = {name: feed[key] for name, key in runner.feed_names.items()}

        def call() -> Any:
            return runner.session.run(None, onnx_feed)

    for _ in range(WARMUP_RUNS):
        call()
    benchmark = request.getfixturevalue("benchmark")
    benchmark.group = f"{key} batch={case.batch_size}"
    benchmark.extra_info.update(info)
    benchmark(call)
    median = benchmark.stats.stats.median if benchmark.stats is not None else None
    measurement = Measurement(key, info["runtime"], case.batch_size, median)
    if case.runtime != "framework" and median:
        framework = next(
            (
                m
                for m in state.measurements
                if (m.model, m.batch_size) == (key, case.batch_size) and m.runtime == prepared.name and m.median_s
            ),
            None,
        )
        if framework is not None and framework.median_s:
            measurement.speedup = framework.median_s / median
            benchmark.extra_info["speedup_vs_framework"] = round(measurement.speedup, 3)
    state.measurements.append(measurement)
    return report


def _threads(framework: str) -> int:
    """The framework's intra-op thread count; ONNX Runtime is given the same."""
    if framework == "torch":
        import torch

        return int(torch.get_num_threads())
    if framework == "tensorflow":
        import tensorflow as tf

        return int(tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1)
    return os.cpu_count() or 1  # ONNX-file and hook-added adapters: no framework thread pool to match
