"""Replay a saved failing check with nothing but onnx, onnxruntime and numpy::

    python -m pytest_onnxparity.replay DIR/<case> [--provider CPUExecutionProvider] [--atol 1e-5 --rtol 1e-4]

Runs ``model.onnx`` on every ``test_data_set_N/input_K.pb`` and compares with ``output_K.pb`` (the
framework's outputs) by the plugin's rule ``|onnx - ref| <= atol * max(1, max|ref|) + rtol * |ref|``.
Exit status 1 when an output differs, so it can gate a script too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def _load(path: Path) -> np.ndarray:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)


def replay(case: Path, provider: str = "CPUExecutionProvider", atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    session = ort.InferenceSession(str(case / "model.onnx"), providers=[provider])
    names = [i.name for i in session.get_inputs()]
    ok = True
    for data in sorted(case.glob("test_data_set_*")):
        feed = {name: _load(data / f"input_{k}.pb") for k, name in enumerate(names)}
        got = session.run(None, feed)
        for k, actual in enumerate(got):
            expected = _load(data / f"output_{k}.pb")
            if expected.shape != actual.shape:
                print(f"{data.name} output {k}: shape {actual.shape} vs expected {expected.shape}")
                ok = False
                continue
            with np.errstate(invalid="ignore"):
                scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(expected), expected, 0)), initial=0)))
                diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
                bad = ~(diff <= atol * scale + rtol * np.abs(expected)) & ~(np.isnan(actual) & np.isnan(expected))
                bad &= ~(np.isinf(actual) & (actual == expected))
            print(
                f"{data.name} output {k}: {int(bad.sum())} of {bad.size} elements differ, max abs diff "
                f"{float(np.nanmax(np.where(np.isnan(diff), np.inf, diff), initial=0)):.3g}"
            )
            ok &= not bad.any()
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", type=Path, help="a directory written by --onnx-artifacts")
    parser.add_argument("--provider", default="CPUExecutionProvider")
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--rtol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    ok = replay(args.case, args.provider, args.atol, args.rtol)
    print("parity OK" if ok else "parity FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
