"""Replay a saved failing check with nothing but onnx, onnxruntime and numpy::

    python -m pytest_onnxparity.replay DIR/<case> [--provider CPUExecutionProvider]

Runs ``model.onnx`` on every ``test_data_set_N/input_K.pb`` and compares with ``output_K.pb`` (the
reference's outputs) by the same rule as the check (``compare.py``), with the tolerances the check
recorded in ``parity.json``. Exit status 0: parity holds; 1: an output differs; 2: the directory
cannot be replayed (the message says why).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .judge.compare import OutputContext, compare
from .judge.tolerance import TolerancePolicy


class ReplayError(Exception):
    """The directory cannot be replayed; the message says what is missing."""


def _load(path: Path) -> Any:
    import onnx
    from onnx import numpy_helper

    if not path.is_file():
        raise ReplayError(
            f"{path} is missing; the artifact directory is incomplete (re-run the failing test with --onnx-artifacts)"
        )
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)


def _policy(case: Path) -> TolerancePolicy:
    """The per-output tolerances and noise factor the check used (by position), else the defaults."""
    record = case / "parity.json"
    if not record.is_file():
        return TolerancePolicy()
    recorded = json.loads(record.read_text())
    outputs = recorded.get("outputs", [])
    return TolerancePolicy(
        atol={f"output {k}": float(o["tolerance"][0]) for k, o in enumerate(outputs)},
        rtol={f"output {k}": float(o["tolerance"][1]) for k, o in enumerate(outputs)},
        noise_factor=float(recorded.get("noise_factor", TolerancePolicy.noise_factor)),
    )


def _context(data: Path, count: int) -> dict[str, OutputContext]:
    """The reference's noise and the padding the check knew at each output, where recorded."""
    out = {}
    for k in range(count):
        noise, padding = data / f"noise_{k}.pb", data / f"padding_{k}.pb"
        out[f"output {k}"] = OutputContext(
            noise=_load(noise) if noise.is_file() else None, exclude=_load(padding) if padding.is_file() else None
        )
    return out


def replay(case: Path, provider: str = "CPUExecutionProvider") -> tuple[bool, list[str]]:
    """(parity holds, one line per data set). Raises :class:`ReplayError` when there is nothing to replay."""
    import onnxruntime as ort

    if not case.is_dir():
        raise ReplayError(f"{case} is not a directory; pass a directory written by --onnx-artifacts")
    if not (case / "model.onnx").is_file():
        raise ReplayError(f"{case} has no model.onnx; pass a directory written by --onnx-artifacts")
    sets = sorted(p for p in case.glob("test_data_set_*") if p.is_dir())
    if not sets:
        raise ReplayError(f"{case} has no test_data_set_* directory: there is nothing to replay")
    policy = _policy(case)
    try:
        session = ort.InferenceSession(str(case / "model.onnx"), providers=[provider])
    except Exception as exc:
        raise ReplayError(f"ONNX Runtime cannot load {case / 'model.onnx'}: {exc}") from exc
    names = [i.name for i in session.get_inputs()]
    ok, lines = True, []
    for data in sets:
        feed = {name: _load(data / f"input_{k}.pb") for k, name in enumerate(names)}
        expected = {f"output {k}": _load(data / f"output_{k}.pb") for k in range(len(session.get_outputs()))}
        try:
            got = session.run(None, feed)
        except Exception as exc:
            lines.append(f"{data.name}: ONNX Runtime failed: {type(exc).__name__}: {str(exc)[:500]}")
            ok = False
            continue
        got_by_position = {f"output {k}": v for k, v in enumerate(got)}
        verdict = compare(expected, got_by_position, policy, check_names=False, context=_context(data, len(got)))
        worst = max((o.max_abs_diff for o in verdict.outputs), default=0.0)
        lines.append(
            f"{data.name}: "
            + (f"parity holds (max abs diff {worst:.3g})" if verdict.passed else f"{verdict.kind}: {verdict.problem}")
        )
        ok &= verdict.passed
    return ok, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", type=Path, help="a directory written by --onnx-artifacts")
    parser.add_argument("--provider", default="CPUExecutionProvider")
    args = parser.parse_args(argv)
    try:
        ok, lines = replay(args.case, args.provider)
    except ReplayError as exc:
        print(f"cannot replay: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print("parity OK" if ok else "parity FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
