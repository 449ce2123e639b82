"""The plugin's cost against the hand-written minimum for the same work, and what a provider or a warm cache adds.

    python benchmarks/minimum.py [--repeat 3]

Three ratios, each measured side by side (runs interleaved, each a fresh process, medians):

1. plugin / hand-written, on the PyTorch sample models: ``pytest sample_models/test_torch_models.py`` against a
   script that exports each model once (torch.onnx dynamo, the same dynamic axes, the same input and output
   names) and runs torch and ONNX Runtime over as many input sets of the same sizes as the plugin checks (its
   fixed edge cases, and as many random ones as it generates), comparing with numpy. Its session does not let
   idle threads spin, as the plugin's do not (spinning threads would slow each torch run). Target: <= 1.25.
2. ``--onnx-providers=cpu,openvino`` / ``cpu`` on the whole sample suite. Target: <= 1.15.
3. a warm re-run with ``--onnx-cache-dir`` / a cold one (empty cache), on the PyTorch sample models.
   Target: <= 0.30.

Beside ratio 3 it measures the floor: the same tests with the check replaced by nothing
(``benchmarks/no_check.py``: the interpreter, pytest, collection and the tests' own imports: torch, and
transformers for the BERT sample). No cache can remove the floor, so it bounds ratio 3 from below; what the
plugin itself leaves of a cold run is (warm - floor) / (cold - floor), printed too. ``--only openvino`` measures
ratio 2 alone, ``--only cache`` ratio 3 and the floor. Each ratio is printed for the medians and for each pair of
neighbouring runs.

Child processes write and use bytecode (``PYTHONDONTWRITEBYTECODE`` is dropped from their environment): where it
is set, pytest recompiles the assertion-rewritten hypothesis package in every process, a cost that is neither the
plugin's nor the cache's. One untimed run comes first, so that every timed run finds the bytecode written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_SAMPLES = "sample_models/test_torch_models.py"


def hand_written() -> None:
    """The minimum: export once, then the same number and sizes of input sets through torch and ONNX Runtime."""
    import inspect

    import numpy as np
    import onnxruntime as ort
    import torch

    from pytest_onnxparity.inputs.plan import axis_limits, axis_plan
    from pytest_onnxparity.inputs.recipes import edge_recipes, materialize
    from pytest_onnxparity.inputs.spec import Recipe, build_specs
    from pytest_onnxparity.options.settings import resolve
    from sample_models.torch_models import NAMES, build

    agreed = compared = 0
    for name in [*NAMES, "mlp"]:  # the sample suite checks the MLP twice (once with marker options)
        model, example, options = build(name)
        resolved = resolve(options, {}, {})
        keyword = isinstance(example, dict)
        values = list(example.values()) if keyword else list(example) if isinstance(example, tuple) else [example]
        names = list(example) if keyword else list(inspect.signature(model.forward).parameters)[: len(values)]
        axes = resolved.dynamic_axes or {n: {0: "batch"} for n in names}
        dims: dict[str, object] = {}
        dynamic = [{a: dims.setdefault(d, torch.export.Dim(d)) for a, d in axes.get(n, {}).items()} for n in names]
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "m.onnx")
            torch.onnx.export(
                model,
                () if keyword else tuple(values),
                path,
                kwargs=dict(example) if keyword else None,
                dynamo=True,
                input_names=names,
                dynamic_shapes=dict(zip(names, dynamic)) if keyword else tuple(dynamic),
            )
            so = ort.SessionOptions()  # idle threads that spin would slow torch's next run, as in the plugin
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            numpy_example = {n: v.numpy() for n, v in zip(names, values)}
            specs = build_specs(numpy_example, axes, resolved)
            plan = axis_plan(
                specs,
                resolved,
                axis_limits(specs, getattr(getattr(model, "config", None), "max_position_embeddings", None)),
            )
            recipes = edge_recipes(specs, resolved, plan)
            rng = np.random.default_rng(0)
            recipes += [
                Recipe("random", tuple((d, int(rng.choice(s))) for d, s in plan.items()), "normal", 1.0, k)
                for k in range(resolved.examples)
            ]
            for recipe in recipes:
                feed = materialize(recipe, specs, numpy_example)
                tensors = [torch.from_numpy(feed[n].copy()) for n in names]
                with torch.no_grad():
                    out = model(**dict(zip(names, tensors))) if keyword else model(*tensors)
                first = out if torch.is_tensor(out) else next(iter(out.values())) if isinstance(out, dict) else out[0]
                got = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})
                agreed += bool(np.allclose(first.numpy(), got[0], rtol=1e-4, atol=1e-4))
                compared += 1
    print(f"hand-written: {agreed} of {compared} input sets agreed")


def _run(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("openvino", "cache"), help="measure ratio 2, or ratio 3 and the floor, only")
    parser.add_argument("--hand-written", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hand_written:
        hand_written()
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    floor = [*pytest, TORCH_SAMPLES, "-p", "no:onnxparity", "-p", "benchmarks.no_check"]
    cache = Path(tempfile.mkdtemp(prefix="onnxparity_cache_"))
    runs: dict[str, list[float]] = {}

    def timed(name: str, command: list[str]) -> None:
        runs.setdefault(name, []).append(_run(command, env))

    try:
        _run([*pytest, TORCH_SAMPLES], env)  # untimed: bytecode written, files in the page cache
        for _ in range(args.repeat):
            if args.only is None:
                timed("plugin", [*pytest, TORCH_SAMPLES])
                timed("hand", [sys.executable, __file__, "--hand-written"])
            if args.only in (None, "openvino"):
                timed("cpu", [*pytest, "sample_models", "--onnx-providers=cpu"])
                timed("cpu+openvino", [*pytest, "sample_models", "--onnx-providers=cpu,openvino"])
            if args.only in (None, "cache"):
                shutil.rmtree(cache, ignore_errors=True)
                timed("cold", [*pytest, TORCH_SAMPLES, f"--onnx-cache-dir={cache}"])
                timed("warm", [*pytest, TORCH_SAMPLES, f"--onnx-cache-dir={cache}"])
                timed("floor", floor)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    median = {k: statistics.median(v) for k, v in runs.items()}
    for name, values in runs.items():
        print(f"{name:>14}: median {median[name]:6.1f} s  (runs: {', '.join(f'{v:.1f}' for v in values)})")
    pairs = [
        ("plugin / hand-written minimum", "plugin", "hand", 1.25),
        ("cpu,openvino / cpu (sample suite)", "cpu+openvino", "cpu", 1.15),
        ("warm cache / cold", "warm", "cold", 0.30),
    ]
    for label, top, bottom, target in [p for p in pairs if p[1] in runs]:
        ratio = median[top] / median[bottom]
        each = ", ".join(f"{t / b:.3f}" for t, b in zip(runs[top], runs[bottom]))
        print(
            f"{label:>34}: {ratio:.2f}  (target <= {target:.2f}: {'met' if ratio <= target else 'NOT met'}; "
            f"each pair: {each})"
        )
    if "floor" in runs:
        print(f"{'floor / cold (no cache removes it)':>34}: {median['floor'] / median['cold']:.2f}")
        left = (median["warm"] - median["floor"]) / (median["cold"] - median["floor"])
        print(f"{'(warm - floor) / (cold - floor)':>34}: {left:.2f}  (what the cache leaves of the plugin's work)")


if __name__ == "__main__":
    main()
