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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import OnnxParityError, OnnxParityUsageError, ParityMismatch

if TYPE_CHECKING:
    from ..adapters import PreparedModel
    from ..options.settings import CheckOptions
    from ..report.parity import ParityReport
    from .session import ParitySession

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
class Measurement:
    model: str
    runtime: str
    batch_size: int
    median_s: float | None
    speedup: float | None = None


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


def collection_batch_sizes(session: ParitySession, definition: Any) -> tuple[int, ...]:
    """Batch sizes to benchmark this test at (marker > command line > ini), or () for none."""
    if not session.policy.benchmark_allowed:
        return ()
    marker = definition.get_closest_marker("onnx_parity")
    wanted = session.policy.benchmark or bool(marker is not None and marker.kwargs.get("benchmark"))
    if not wanted:
        return ()
    try:
        options = session.options(definition, {})
    except OnnxParityError:
        return ()  # the test itself fails with the message when it runs
    if not session.policy.benchmark:
        require_pytest_benchmark(session.config)
    return options.benchmark_batch_sizes or tuple(sorted({1, max(options.batch_sizes)}))


def run(
    session: ParitySession,
    request: pytest.FixtureRequest,
    prepared: PreparedModel,
    options: CheckOptions,
    provider: str,
    case: BenchmarkCase,
    workdir: Path,
) -> ParityReport:
    """Time one runtime at one batch size; returns the parity report of the same model and provider."""
    from ..inputs import recipes as inputs
    from ..inputs import spec
    from ..runners.onnxruntime import OrtRunner
    from .session import model_key

    key = model_key(request.node)
    cached = session.benchmark.parity.get((key, provider, case.variant))
    if cached is None:  # the parity item did not run first (deselected, or run alone): check parity here
        result = session.run(prepared, options, provider, workdir, request.node, case.variant)
        if not result.report.passed:
            raise ParityMismatch(result.report)
        cached = session.benchmark.parity[(key, provider, case.variant)] = (result.exported.path, result.report)
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
    state = session.benchmark
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


def _variant_panel(ax: Any, model: str, rows: Sequence[dict[str, Any]]) -> None:
    """Size (x) against latency at the largest batch timed (y), each point labelled with its worst cosine."""
    for r in rows:
        if not r["size_bytes"] or not r["latency_ms"]:
            continue
        batch = max(r["latency_ms"])
        ax.scatter(r["size_bytes"] / 1e6, r["latency_ms"][batch], marker="o" if r["verdict"] == "PASS" else "x")
        accuracy = f"cos {r['metrics']['cosine']:.4f}" if "cosine" in r["metrics"] else "exact"
        ax.annotate(
            f"{r['provider']} {r['variant']} ({accuracy}, {r['verdict']})",
            (r["size_bytes"] / 1e6, r["latency_ms"][batch]),
            fontsize=7,
        )
    ax.set_xlabel("file size (MB)")
    ax.set_ylabel("median latency, largest batch (ms)")
    ax.set_title(f"{model}: variants", fontsize=9)


def _threads(framework: str) -> int:
    """The framework's intra-op thread count; ONNX Runtime is given the same."""
    if framework == "torch":
        import torch

        return int(torch.get_num_threads())
    if framework == "tensorflow":
        import tensorflow as tf

        return int(tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1)
    return os.cpu_count() or 1  # ONNX-file and hook-added adapters: no framework thread pool to match


def summary_lines(measurements: list[Measurement]) -> list[str]:
    """One line per model and batch size: each runtime's median and its speedup over the framework."""
    lines = []
    seen: dict[tuple[str, int], list[Measurement]] = {}
    for m in measurements:
        seen.setdefault((m.model, m.batch_size), []).append(m)
    for (model, batch), group in seen.items():
        parts = []
        for m in group:
            if m.median_s is None:
                continue
            text = f"{m.runtime} {m.median_s * 1e3:.3f} ms"
            if m.speedup is not None:
                text += f" ({m.speedup:.2f}x)"
            parts.append(text)
        if parts:
            lines.append(f"{model} batch={batch}: " + ", ".join(parts))
    return lines


def plot(measurements: list[Measurement], path: Path, variants: Sequence[dict[str, Any]] = ()) -> None:
    """A PNG: median latency per runtime (bars) and batch size (groups), one panel per model; beside it, for a
    model with variants, each variant's file size against its latency, labelled with its accuracy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise pytest.UsageError(
            "--onnx-benchmark-plot needs matplotlib: pip install 'pytest-onnxparity[benchmark]'"
        ) from exc
    models = sorted({m.model for m in measurements})
    columns = 2 if variants else 1
    fig, axes = plt.subplots(len(models), columns, figsize=(8 * columns, 3.2 * max(1, len(models))), squeeze=False)
    for row, model in enumerate(models):
        if variants:
            _variant_panel(axes[row, 1], model, [v for v in variants if v["model"] == model])
        ax = axes[row, 0]
        medians = {(m.runtime, m.batch_size): m.median_s for m in measurements if m.model == model and m.median_s}
        batches = sorted({b for _, b in medians})
        runtimes = list(dict.fromkeys(r for r, _ in medians))
        width = 0.8 / max(1, len(runtimes))
        for i, runtime in enumerate(runtimes):
            values = [(medians.get((runtime, b)) or 0.0) * 1e3 for b in batches]
            ax.bar([x + i * width for x in range(len(batches))], values, width, label=runtime)
        ax.set_xticks([x + width * (len(runtimes) - 1) / 2 for x in range(len(batches))])
        ax.set_xticklabels([f"batch {b}" for b in batches])
        ax.set_ylabel("median latency (ms)")
        ax.set_title(model, fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
