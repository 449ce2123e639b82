"""A suite of real architectures under pytest-xdist: wall time, exports per model, peak memory, cold vs warm cache.

The suite is one parity test per architecture of ``benchmarks/architectures.py`` (22: BERT ... Whisper's
encoder, and Keras applications built with ``weights=None``), on two providers (each model has two items, so
a split model would be exported twice). Each run is a fresh ``pytest`` process:

1. serial, no cache;
2. ``-n 2`` with an empty ``--onnx-cache-dir`` (cold: every model exported, and written to the cache);
3. ``-n 2`` again on that cache (warm: every export read back).

It prints one row per run: wall time (and its ratio to the serial run), exports per model (from the JSON report:
checks whose export was run, per model), and the peak resident memory of each process (``ru_maxrss``)::

    python benchmarks/xdist.py [--providers cpu,openvino] [--models bert,gpt2,...] [--workers 2]

Checks are kept short (``--onnx-examples=2 --onnx-batch-sizes=1,2``): the export is what xdist can duplicate.

``--latency-noise`` measures instead why latency items are not run under xdist: the median and 90th percentile
of ONNX Runtime runs of the sample CNN (batch 32, the framework's thread count), alone and while a second process
exports models, as the other xdist worker would.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.architectures import NAMES  # noqa: E402  (the checkout first on the path)

SUITE = """
import os
import pytest
from benchmarks.architectures import build

@pytest.mark.parametrize("name", os.environ["ARCHITECTURES"].split(","))
def test_architecture(onnx_parity, name):
    model, example, options = build(name)
    onnx_parity(model, example, **options)
"""

#: Each process writes its peak resident memory when its session ends (a worker's and the controller's).
PEAK_MEMORY = """
import os
import resource
from pathlib import Path

def pytest_sessionfinish(session):
    name = os.environ.get("PYTEST_XDIST_WORKER", "controller" if os.environ.get("XDIST_RUN") else "serial")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (Path(__file__).parent / f"rss.{os.environ['RUN']}.{name}.txt").write_text(f"{peak_mb:.0f}")
"""


def run(label: str, where: Path, models: list[str], providers: str, extra: list[str]) -> dict[str, object]:
    """One fresh pytest session; its wall time, exports per model and peak memory per process."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "ARCHITECTURES": ",".join(models),
        "RUN": label,
        "XDIST_RUN": "1" if "-n" in extra else "",
    }
    report = where / f"{label}.json"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--onnx-providers={providers}"]
    command += ["--onnx-examples=2", "--onnx-batch-sizes=1,2", f"--onnx-report={report}", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=where, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{label}: the suite failed:\n{done.stdout[-4000:]}")
    checks = json.loads(report.read_text())["checks"]
    exported = collections.Counter(c["model"] for c in checks if c["export_origin"] == "exported")
    cached = sum(c["export_origin"] == "cached" for c in checks)
    peaks = {p.name.split(".")[2]: int(p.read_text()) for p in sorted(where.glob(f"rss.{label}.*.txt"))}
    for model in (m for m, n in exported.items() if n > 1):  # say why: a re-check on a fresh export, or a split
        origins = [(c["nodeid"], c["export_origin"], c["warnings"]) for c in checks if c["model"] == model]
        print(f"{label}: {model} exported {exported[model]} times: {origins}")
    return {
        "run": label,
        "seconds": seconds,
        "models": len({c["model"] for c in checks}),
        "checks": len(checks),
        "exports per model": f"{max(exported.values(), default=0)} max, {sum(exported.values())} in all",
        "read from cache": cached,
        "peak RSS MB": ", ".join(f"{name} {mb}" for name, mb in peaks.items()),
    }


#: What the other xdist worker does meanwhile: export models, over and over.
BUSY = """
import io, contextlib, torch
from sample_models.torch_models import build
model, example, _ = build("cnn")
while True:
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(model, (example,), "/dev/null", dynamo=True)
"""


def latency_noise(runs: int = 300) -> None:
    """Milliseconds per ONNX Runtime run of the sample CNN, alone and beside a process that exports."""
    import io
    import statistics
    from contextlib import redirect_stdout

    import numpy as np
    import onnxruntime as ort
    import torch

    from sample_models.torch_models import build

    model, _, _ = build("cnn")
    with tempfile.TemporaryDirectory() as tmp, redirect_stdout(io.StringIO()):
        path = f"{tmp}/cnn.onnx"
        torch.onnx.export(model, (torch.zeros(32, 3, 32, 32),), path, dynamo=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).normal(size=(32, 3, 32, 32)).astype(np.float32)}

    def timed() -> list[float]:
        for _ in range(10):
            session.run(None, feed)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - start) * 1e3)
        return times

    alone = timed()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    busy = subprocess.Popen([sys.executable, "-c", BUSY], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(8)  # past its imports, into the exports
        beside = timed()
    finally:
        busy.kill()
    print(f"sample CNN, batch 32, {torch.get_num_threads()} threads, {runs} runs, {os.cpu_count()} CPUs")
    for label, times in (("alone", alone), ("beside an exporting worker", beside)):
        deciles = statistics.quantiles(times, n=10)
        print(f"{label}: median {statistics.median(times):.2f} ms, p90 {deciles[-1]:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--providers", default="cpu,openvino")
    parser.add_argument("--models", default=",".join(NAMES), help=f"comma separated, of: {','.join(NAMES)}")
    parser.add_argument("--workers", default="2")
    parser.add_argument("--latency-noise", action="store_true", help="measure latency alone vs beside an export")
    args = parser.parse_args()
    if args.latency_noise:
        latency_noise()
        return
    models = args.models.split(",")
    unknown = sorted(set(models) - set(NAMES))
    if unknown:
        raise SystemExit(f"unknown models {unknown}; choose from {', '.join(NAMES)}")
    xdist = ["-n", args.workers]
    with tempfile.TemporaryDirectory(prefix="onnxparity_xdist_") as tmp:
        where = Path(tmp)
        (where / "test_architectures.py").write_text(SUITE)
        (where / "conftest.py").write_text(PEAK_MEMORY)
        rows = [run("serial", where, models, args.providers, [])]
        rows.append(run("xdist-cold-cache", where, models, args.providers, [*xdist, "--onnx-cache-dir=cache"]))
        rows.append(run("xdist-warm-cache", where, models, args.providers, [*xdist, "--onnx-cache-dir=cache"]))
    serial = float(rows[0]["seconds"])  # type: ignore[arg-type]
    print(f"{len(models)} models x providers {args.providers}, {os.cpu_count()} CPUs, -n {args.workers}\n")
    print("| run | wall s | vs serial | checks | exports per model | read from cache | peak RSS MB per process |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        seconds = float(row["seconds"])  # type: ignore[arg-type]
        print(
            f"| {row['run']} | {seconds:.0f} | {seconds / serial:.2f}x | {row['checks']} | "
            f"{row['exports per model']} | {row['read from cache']} | {row['peak RSS MB']} |"
        )


if __name__ == "__main__":
    main()
