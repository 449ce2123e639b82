"""The variant table of the sample models: each variant's file size, latency per batch size, metrics and verdict.

Runs the sample suite with every variant and the benchmark items, in one fresh pytest process, and prints the
table the plugin writes (the same rows are in the JSON report under "variants"):

    python benchmarks/variants.py [--providers cpu] [--variants optimized,simplified,fp16,int8-dynamic,int8-static]
        [--json variants.json] [-k cnn]

A FAIL row is a verdict of the check (an int8 variant of a small transformer that does not reach the default
cosine, say), not an error of this script; the script exits 0 when the suite ran.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALL = "optimized,simplified,fp16,int8-dynamic,int8-static"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--providers", default="cpu")
    parser.add_argument("--variants", default=ALL)
    parser.add_argument("--json", help="also keep the JSON report here")
    parser.add_argument("-k", dest="keyword", help="pytest -k: a subset of the sample models")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pytest_onnxparity.report import summary

    with tempfile.TemporaryDirectory(prefix="onnxparity_variants_") as tmp:
        report = Path(args.json or Path(tmp) / "report.json").resolve()
        command = [
            *(sys.executable, "-m", "pytest", "sample_models", "-q", "-p", "no:cacheprovider"),
            f"--onnx-providers={args.providers}",
            f"--onnx-variants={args.variants}",
            "--onnx-benchmark",
            "--benchmark-max-time=0.2",
            f"--onnx-report={report}",
            *(["-k", args.keyword] if args.keyword else []),
        ]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if not report.is_file():
            raise SystemExit(f"the suite wrote no report (exit {done.returncode}):\n{done.stdout[-3000:]}")
        rows = json.loads(report.read_text())["variants"]
    for row in rows:  # JSON keys are strings; the table sorts batch sizes as numbers
        row["latency_ms"] = {int(b): ms for b, ms in row["latency_ms"].items()}
    print("\n".join(summary.variant_lines(rows)))
    print(f"\n{len(rows)} rows; pytest exit {done.returncode}; {seconds:.0f} s wall ({' '.join(command[3:])})")


if __name__ == "__main__":
    main()
