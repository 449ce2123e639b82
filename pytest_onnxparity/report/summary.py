"""The session's record of every check: entries, the summary table, the JSON report, JUnit properties.

Entries are plain JSON (non-finite numbers as strings) so xdist can ship them and the report is strict
JSON; everything here formats what it gets and never raises on an odd value.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..judge.kinds import COMPARED

if TYPE_CHECKING:
    from .parity import ParityReport


def plain(entry: dict[str, Any]) -> dict[str, Any]:
    """Only JSON types: non-finite floats become 'inf', '-inf', 'nan'; tuples become lists."""
    result: dict[str, Any] = json.loads(json.dumps(_json_safe(entry), default=str))
    return result


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def error_entry(
    nodeid: str, provider: str, message: str, status: str = "error", model: str = "", variant: str | None = None
) -> dict[str, Any]:
    """A check that ended without a report (bad input, a crash, a missing provider or tool); ``model`` and
    ``variant`` place it in the variant table."""
    entry = {"nodeid": nodeid, "provider": provider, "passed": False, "status": status, "error": message}
    return {**entry, "model": model or nodeid, "variant": variant}


def junit_properties(index: int, report: ParityReport, call_variant: bool = False) -> list[tuple[str, Any]]:
    """Key figures as JUnit ``user_properties`` (``--junitxml`` carries them); a variant checked in the test's own
    item (named on the call only) gets its own names: ``onnx_parity[fp16].passed``."""
    prefix = "onnx_parity" if index == 0 else f"onnx_parity_{index}"
    prefix += f"[{report.variant}]" if call_variant else ""
    worst = report.worst_output()
    props: dict[str, Any] = {
        "passed": report.passed,
        "provider": report.provider,
        "examples": report.examples,
        "exporter": report.exporter,
        "opset": report.opset,
        "precision": report.precision,
        "worst_output": worst.name if worst else "",
        "max_abs_diff": worst.max_abs_diff if worst else 0.0,
        "max_rel_diff": worst.max_rel_diff if worst else 0.0,
        "tolerance_used": worst.tolerance_used if worst else 0.0,
        "conversion_margin": report.conversion_margin,
    }
    if report.provider_margin is not None:
        props["provider_margin"] = report.provider_margin
    if report.failure is not None:
        props["failure"] = f"{report.failure.verdict}: {report.failure.kind}: {report.failure.message}"
    return [(f"{prefix}.{k}", v) for k, v in props.items()]


def _number(value: Any, spec: str) -> str:
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def _float(value: Any) -> float:
    """A figure as a float ('inf' strings included); anything unreadable sorts as the worst."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.inf
    return math.inf if math.isnan(number) else number


def _margin(entry: dict[str, Any]) -> float:
    """The larger of the two verdicts' shares used (the conversion's, the provider's); a failure sorts first."""
    if "error" in entry or not entry.get("passed", False):
        return math.inf
    return max(
        (_float(o["tolerance_used"]) for o in [*entry.get("outputs", []), *entry.get("versus_cpu", [])]), default=0.0
    )


#: The reach column's word for what bounded an axis's walk (``reach[dim]["bound"]``).
BOUNDS = (("rejected", "model rejects"), ("time budget", "time"), ("memory budget", "memory"), ("", "limit"))


def _reach(entry: dict[str, Any]) -> str:
    def bound(fig: dict[str, Any]) -> str:
        text = fig.get("bound")
        return "" if not text else f" ({next(word for key, word in BOUNDS if key in text)})"

    reach = (entry.get("reach") or {}).items()
    parts = [f"{dim}<={fig['largest']}{bound(fig)}" for dim, fig in reach if fig.get("largest")]
    skipped = sum(len(fig.get("skipped", {})) for fig in (entry.get("reach") or {}).values())
    return (", ".join(parts) or "-") + (f" ({skipped} skipped)" if skipped else "")


def _row(entry: dict[str, Any]) -> tuple[str, ...]:
    head = (
        str(entry.get("nodeid", "?")),
        str(entry.get("provider", "?")) + (f" {entry['variant']}" if entry.get("variant") else ""),
    )
    if "error" in entry:
        status = {"skipped": "SKIP", "interrupted": "INTERRUPTED", "crashed": "CRASHED"}.get(entry.get("status", ""))
        return (*head, "-", "-", "-", "-", "-", status or "ERROR", "")
    outputs = entry.get("outputs") or []
    worst = max(outputs, key=lambda o: _float(o["tolerance_used"]), default=None)
    versus = entry.get("versus_cpu") or []
    failure = entry.get("failure") or {}
    value_failure = failure.get("kind") is None or failure.get("kind") in COMPARED
    status = (
        "PASS" if entry.get("passed") else f"FAIL {failure.get('verdict', 'conversion')} ({failure.get('kind', '?')})"
    )
    if entry.get("passed") and worst is not None:
        status += f" {_number(worst['tolerance_used'], '.0%')}"
    provider = "-"
    if versus:  # the provider's share of its own allowance, against the CPU provider
        provider = _number(max(_float(o["tolerance_used"]) for o in versus), ".0%")
    if worst is None or not value_failure:  # figures from other inputs beside a crash would mislead
        return (*head, str(entry.get("examples", "-")), "-", "-", "-", _reach(entry), status, provider)
    return (
        *head,
        str(entry.get("examples", "-")),
        str(worst["name"]),
        _number(worst["max_abs_diff"], ".2e"),
        "metrics" if worst.get("limits") else f"{_number(worst['atol'], 'g')}/{_number(worst['rtol'], 'g')}",
        _reach(entry),
        status,
        provider,
    )


def summary_lines(entries: list[dict[str, Any]]) -> list[str]:
    """One row per check, the closest to failing first: the conversion's figures and margin (ONNX Runtime's CPU
    provider against the model), then the provider's margin of its own allowance (against the CPU provider)."""
    rows = [_row(e) for e in sorted(entries, key=_margin, reverse=True)]
    header = (
        "test",
        "provider",
        "examples",
        "worst output",
        "max abs",
        "atol/rtol",
        "reach",
        "margin",
        "provider margin",
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def variant_rows(entries: list[dict[str, Any]], measurements: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """The variant table: per model that has variants, one row per check (the export itself, then each variant):
    file size, median latency per batch size (benchmark items, when run), the worst of each metric over its
    outputs, the margin and the verdict."""
    models = {e.get("model") for e in entries if e.get("variant")}
    rows = []
    for entry in entries:
        if entry.get("model") not in models or entry.get("benchmark"):
            continue
        label = str(entry.get("provider", "?")) + (f"-{entry['variant']}" if entry.get("variant") else "")
        latency = {
            m.batch_size: round(m.median_s * 1e3, 4)
            for m in measurements
            if m.model == entry.get("model") and m.runtime == label and m.median_s
        }
        worst: dict[str, float] = {}
        for output in entry.get("outputs") or []:
            for name, value in (output.get("metrics") or {}).items():
                worst[name] = min(worst.get(name, math.inf), _float(value))
        failure = entry.get("failure") or {}
        rows.append(
            {
                "model": entry.get("model"),
                "provider": entry.get("provider"),
                "variant": entry.get("variant") or "export",
                "size_bytes": entry.get("onnx_size_bytes"),
                "latency_ms": latency,
                "metrics": worst,
                "margin": _margin(entry) if "error" not in entry else None,
                "verdict": ("SKIPPED" if entry.get("status") == "skipped" else "ERROR")
                if "error" in entry
                else "PASS"
                if entry.get("passed")
                else f"FAIL ({failure.get('kind')})",
            }
        )
    return rows


def variant_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The variant table as text, one model after the other."""
    rows = [{**r, "latency_ms": {int(b): ms for b, ms in r["latency_ms"].items()}} for r in rows]  # JSON: "1": ...
    batches = sorted({b for r in rows for b in r["latency_ms"]})
    header = ("model", "provider", "variant", "size MB", *[f"ms b{b}" for b in batches], "cosine", "SNR dB", "top-1")
    header = (*header, "top-5", "margin", "verdict")
    table = []
    for r in rows:
        size = _number((r["size_bytes"] or 0) / 1e6, ".3f") if r["size_bytes"] else "-"
        metrics = [
            _number(r["metrics"][k], spec) if k in r["metrics"] else "-"
            for k, spec in (("cosine", ".5f"), ("snr_db", ".1f"), ("top1", ".3f"), ("top5", ".3f"))
        ]
        latency = [_number(r["latency_ms"][b], ".3f") if b in r["latency_ms"] else "-" for b in batches]
        share = None if r["margin"] is None else _float(r["margin"])  # rows read back from JSON have 'inf' strings
        margin = _number(share, ".0%") if share is not None and math.isfinite(share) else "-"
        table.append(
            (str(r["model"]), str(r["provider"]), r["variant"], size, *latency, *metrics, margin, r["verdict"])
        )
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip()] + [fmt.format(*row).rstrip() for row in table]


def timing_lines(entries: list[dict[str, Any]]) -> list[str]:
    """Per check, where its time went (``-v``): ``test[cpu]  export 3.2 s (exported), reference 1.4 s, ...``."""
    lines = []
    for entry in entries:
        timings = entry.get("timings") or {}
        if timings:
            parts = [f"{phase} {_number(seconds, '.2f')} s" for phase, seconds in timings.items()]
            origin = entry.get("export_origin")
            parts[0] += f" ({origin})" if origin and parts[0].startswith("export ") else ""
            lines.append(f"{entry.get('nodeid', '?')}  " + ", ".join(parts))
    return lines


def write_json(
    path: Path, entries: list[dict[str, Any]], variants: Sequence[dict[str, Any]] = (), interrupted: bool = False
) -> None:
    """The JSON report, written atomically (a temporary file in the same directory, then renamed); ``interrupted``:
    the run was stopped (Ctrl-C) before every test ran, so ``checks`` holds only those that started."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    rows = plain({"rows": list(variants)})["rows"]
    document = {"version": 3, "interrupted": interrupted, "checks": entries, "variants": rows}
    tmp.write_text(json.dumps(document, indent=2, allow_nan=False))
    os.replace(tmp, path)
