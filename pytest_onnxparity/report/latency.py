"""Latency results of the benchmark items: the measurement record, the summary lines and the plot."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import OnnxParityUsageError


@dataclasses.dataclass
class Measurement:
    model: str
    runtime: str
    batch_size: int
    median_s: float | None
    speedup: float | None = None


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
        raise OnnxParityUsageError(
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
