"""Real architectures (``architectures.py``: transformers models from tiny configs, Keras applications with
``weights=None``; no download), each checked with the default options on the CPU provider.

    python benchmarks/real_architectures.py [--only bert,gpt2]

Prints one row per model: PASS / FAIL, the input sets compared, the seconds, the reach, and each warning (a healthy
conversion must pass by default: no false alarm from masks with holes, NaN/Inf inputs, long sequences or a refused
noise estimate).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import architectures  # noqa: E402  (the checkout first on the path)


def main() -> None:
    from pytest_onnxparity import check
    from pytest_onnxparity.report.parity import reach_text

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(architectures.NAMES), help="comma-separated names")
    args = parser.parse_args()
    failed = 0
    for name in args.only.split(","):
        model, example, options = architectures.build(name)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = check(model, example, **options)
        seconds = time.perf_counter() - started
        failed += not report.passed
        verdict = "PASS" if report.passed else f"FAIL ({report.failure.kind if report.failure else '?'})"
        print(f"{name:26} {verdict:22} {report.examples:4} sets  {seconds:6.1f} s  reach: {reach_text(report.reach)}")
        if report.failure is not None:
            print(f"    failure: {report.failure.message[:400]}")
        for warning in report.warnings:
            print(f"    warning: {warning[:400]}")
    print(f"{failed} of {len(args.only.split(','))} failed")


if __name__ == "__main__":
    main()
