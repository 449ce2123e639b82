"""Wall time of the sample parity suite with the default check, this checkout vs a baseline revision.

The default inputs reach further than they used to (a batch of 17, sequences walked to the model's limit);
this measures what that costs. Both trees run in the same environment, interleaved, each run a fresh
process (export, imports and all):

    python benchmarks/sample_suite.py --baseline fc370f4 [--repeat 3] [--providers cpu]

The baseline is checked out into a temporary git worktree and put first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_suite(tree: Path, providers: str, extra: list[str]) -> float:
    """Seconds for ``pytest sample_models`` in ``tree`` (its own plugin first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "sample_models",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--onnx-providers={providers}",
        *extra,
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{tree}: the sample suite failed:\n{done.stdout[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="a git revision to compare with (omit: this checkout only)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--providers", default="cpu")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments for both trees")
    args = parser.parse_args()
    trees = {"now": ROOT}
    with tempfile.TemporaryDirectory(prefix="onnxparity_baseline_") as tmp:
        if args.baseline:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", tmp, args.baseline],
                check=True,
                capture_output=True,
            )
            trees = {f"baseline {args.baseline}": Path(tmp), **trees}
        try:
            times: dict[str, list[float]] = {name: [] for name in trees}
            for _ in range(args.repeat):
                for name, tree in trees.items():
                    times[name].append(run_suite(tree, args.providers, args.pytest_args))
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", tmp], check=False)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, seconds in medians.items():
        print(f"{name:>24}: median {seconds:6.1f} s  (runs: {', '.join(f'{t:.1f}' for t in times[name])})")
    if args.baseline:
        ratio = medians["now"] / medians[f"baseline {args.baseline}"]
        print(f"{'now / baseline':>24}: {ratio:.2f}x ({(ratio - 1) * 100:+.0f}%)")


if __name__ == "__main__":
    main()
