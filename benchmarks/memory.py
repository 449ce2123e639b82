"""Does a long session's memory stay flat? Peak RSS over a session of many mid-size models.

Runs one pytest session (a fresh process) of ``--items`` parity checks, each of another model with about 4 MB of
weights (Linear(1000, 1000) + ReLU + Linear(1000, 10)), and records the test process's resident memory after
each item, and the ONNX Runtime worker process's. It prints the peak RSS of both, and the growth per item after
warm-up (a least-squares slope over the items past ``--warmup``): flat means each check's sessions, graph copies
and runners are released when it ends, not at a garbage collection.

    python benchmarks/memory.py [--items 100] [--warmup 10] [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TEST = """
import json, os, pytest, torch
try:
    from pytest_onnxparity.runners import worker
except ImportError:  # a checkout before the worker process
    worker = None

def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0

@pytest.fixture(autouse=True)
def record():
    yield
    child = getattr(getattr(worker, "_WORKER", None), "_process", None)
    with open(os.environ["RSS_LOG"], "a") as log:
        log.write(json.dumps([rss_mb(os.getpid()), rss_mb(child.pid) if child else 0.0]) + "\\n")

@pytest.mark.parametrize("k", range(int(os.environ["ITEMS"])))
def test_model(onnx_parity, k):
    torch.manual_seed(k)
    model = torch.nn.Sequential(torch.nn.Linear(1000, 1000), torch.nn.ReLU(), torch.nn.Linear(1000, 10)).eval()
    onnx_parity(model, torch.randn(2, 1000), exporter="torchscript", examples=5)
"""


def slope(values: list[float]) -> float:
    """Least-squares growth per item."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    return num / sum((i - mean_x) ** 2 for i in range(n))


def measure(tree: Path, items: int) -> list[tuple[float, float]]:
    with tempfile.TemporaryDirectory(prefix="onnxparity_memory_") as tmp:
        Path(tmp, "test_memory.py").write_text(TEST)
        log = Path(tmp, "rss.jsonl")
        env = {**os.environ, "PYTHONPATH": str(tree), "RSS_LOG": str(log), "ITEMS": str(items)}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_memory.py"]
        done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"the session failed:\n{done.stdout[-3000:]}")
        return [tuple(json.loads(line)) for line in log.read_text().splitlines()]  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose plugin runs (default: this one)")
    args = parser.parse_args()
    rows = measure(args.tree, args.items)
    tests, workers = [r[0] for r in rows], [r[1] for r in rows]
    print(f"{args.tree}: {len(rows)} items of a 4 MB model")
    for label, series in (("test process", tests), ("ONNX Runtime worker", workers)):
        if not any(series):
            continue
        after = series[args.warmup :]
        print(
            f"  {label:<20} peak RSS {max(series):7.1f} MB; at item {args.warmup}: {series[args.warmup]:7.1f} MB, "
            f"last: {series[-1]:7.1f} MB; growth after warm-up {slope(after):+.2f} MB per item"
        )


if __name__ == "__main__":
    main()
