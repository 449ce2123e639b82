"""What does the plugin's latency measurement add on top of a hand-written timing loop?

For the sample MLP and CNN, at batch 1 and 8, this times torch eager and ONNX Runtime (CPU provider)
twice: with a hand-written loop (warm-up, ``time.perf_counter``, median) and through
``pytest --onnx-benchmark`` (pytest-benchmark's median). It prints both medians and their ratio
(plugin / hand); a ratio near 1.0 means the plugin's figures are the model's latency, not the harness's.

    python benchmarks/overhead.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCHES = (1, 8)
MODELS = ("mlp", "cnn")


def hand_loop(fn, rounds: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hand_written(name: str, rounds: int, workdir: Path) -> dict[tuple[str, int], float]:
    import onnxruntime as ort
    import torch

    from sample_models.torch_models import build

    model, example, _ = build(name)
    path = workdir / f"{name}.onnx"
    batch = torch.export.Dim("batch")
    torch.onnx.export(model, (example,), str(path), dynamo=True, dynamic_shapes=({0: batch},), verbose=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    out = {}
    for b in BATCHES:
        x = torch.randn(b, *example.shape[1:])
        x_np = x.numpy()

        def run_torch(x: torch.Tensor = x) -> None:
            with torch.no_grad():
                model(x).numpy()

        def run_onnx(x_np: object = x_np) -> None:
            session.run(None, {input_name: x_np})

        out[("torch", b)] = hand_loop(run_torch, rounds)
        out[("cpu", b)] = hand_loop(run_onnx, rounds)
    return out


def through_plugin(workdir: Path) -> dict[tuple[str, str, int], float]:
    import pytest

    test = workdir / "test_overhead.py"
    test.write_text(
        "import pytest\n"
        "from sample_models.torch_models import build\n\n"
        f"@pytest.mark.parametrize('name', {list(MODELS)!r})\n"
        f"@pytest.mark.onnx_parity(benchmark_batch_sizes={BATCHES!r}, examples=0)\n"
        "def test_model(onnx_parity, name):\n"
        "    model, example, options = build(name)\n"
        "    onnx_parity(model, example, **options)\n"
    )
    report = workdir / "bench.json"
    code = pytest.main(
        [
            str(test),
            "-q",
            "-p",
            "no:cacheprovider",
            "--onnx-benchmark",
            f"--benchmark-json={report}",
            f"--rootdir={workdir}",
            "--benchmark-min-rounds=50",
            "--benchmark-max-time=1.0",
        ]
    )
    if code != 0:
        raise SystemExit(f"pytest exited {code}")
    out = {}
    for entry in json.loads(report.read_text())["benchmarks"]:
        info = entry["extra_info"]
        model = "mlp" if "mlp" in info["model"] else "cnn"
        out[(model, info["runtime"], info["batch_size"])] = entry["stats"]["median"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300, help="timed runs of the hand-written loop")
    parser.add_argument("--repeats", type=int, default=3, help="hand loop / plugin run pairs, interleaved")
    args = parser.parse_args()
    hand: dict[tuple[str, str, int], list[float]] = {}
    plugin: dict[tuple[str, str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # Interleaved repeats: a shared 2-core machine drifts by tens of percent within a minute, so each
        # figure is the median over repeats, and the spread (min..max) is printed beside it.
        for _ in range(args.repeats):
            for name in MODELS:
                for (runtime, batch), median in hand_written(name, args.rounds, workdir).items():
                    hand.setdefault((name, runtime, batch), []).append(median)
            for key, median in through_plugin(workdir).items():
                plugin.setdefault(key, []).append(median)
    print()
    print(
        f"{'model':<6} {'batch':>5} {'runtime':<8} {'hand median':>12} {'(spread)':>18} {'plugin median':>14} "
        f"{'(spread)':>18} {'plugin/hand':>12}"
    )
    for (name, runtime, batch), hand_runs in hand.items():
        plugin_runs = plugin[(name, runtime, batch)]
        h, p = statistics.median(hand_runs), statistics.median(plugin_runs)
        print(
            f"{name:<6} {batch:>5} {runtime:<8} {h * 1e3:>9.3f} ms {_spread(hand_runs):>18} {p * 1e3:>11.3f} ms "
            f"{_spread(plugin_runs):>18} {p / h:>12.2f}"
        )


def _spread(runs: list[float]) -> str:
    return f"{min(runs) * 1e3:.3f}..{max(runs) * 1e3:.3f}"


if __name__ == "__main__":
    main()
