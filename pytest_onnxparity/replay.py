"""Replay a saved failing check with nothing but onnx, onnxruntime and numpy::

    python -m pytest_onnxparity.replay DIR/<case> [--provider CPUExecutionProvider]

Runs ``model.onnx`` on every ``test_data_set_N/input_K.pb`` and compares with ``output_K.pb`` (the
reference's outputs) by the same rule as the check (``compare.py``), with the settings the check's verdict
used, recorded in ``parity.json`` (each output's tolerance, the noise factor, a variant's metric thresholds).
Every output the check compared must come back: a graph that lost one fails. Exit status 0: parity holds;
1: an output differs; 2: the directory cannot be replayed, or the provider asked for is not in this build
of ONNX Runtime (the message says why).
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


def _record(case: Path) -> dict[str, Any]:
    """``parity.json`` ({} when the directory has none: the defaults judge)."""
    record = case / "parity.json"
    if not record.is_file():
        return {}
    try:
        recorded = json.loads(record.read_text())
    except ValueError as exc:
        raise ReplayError(
            f"{record} is not valid JSON ({exc}); re-run the failing test with --onnx-artifacts"
        ) from None
    if not isinstance(recorded, dict):
        raise ReplayError(f"{record} is not a parity record; re-run the failing test with --onnx-artifacts")
    return recorded


def _policy(recorded: dict[str, Any], names: list[str]) -> TolerancePolicy:
    """The settings the check's verdict used (each output's tolerance by position, the noise factor, a variant's
    metric thresholds), else the defaults."""
    outputs = recorded.get("outputs", [])
    return TolerancePolicy(
        atol={name: float(o["tolerance"][0]) for name, o in zip(names, outputs)},
        rtol={name: float(o["tolerance"][1]) for name, o in zip(names, outputs)},
        noise_factor=float(recorded.get("noise_factor", TolerancePolicy.noise_factor)),
        variant=recorded.get("variant"),
        variant_metrics=recorded.get("variant_metrics") or {},
    )


def _output_names(recorded: dict[str, Any], data: Path, graph_outputs: int) -> list[str]:
    """The outputs the check compared, in order: the record's names, else one per ``output_K.pb`` (at least as many
    as the graph has): the graph must give back every one of them."""
    names = [str(o.get("name", f"output {k}")) for k, o in enumerate(recorded.get("outputs", []))]
    if names and len(set(names)) == len(names):
        return names
    stored = len(list(data.glob("output_*.pb")))
    return [f"output {k}" for k in range(max(len(names), stored, graph_outputs))]


def _session(model: Path, provider: str) -> Any:
    """An ONNX Runtime session on ``provider`` and nothing else: a provider this build lacks is refused, never
    replaced by the CPU (ONNX Runtime itself would warn and run on what it has)."""
    import onnxruntime as ort

    from .providers.registry import SHORT_NAMES

    wanted = SHORT_NAMES.get(provider, provider)
    available = ort.get_available_providers()
    if wanted not in available:
        raise ReplayError(
            f"{wanted} is not available in this build of ONNX Runtime ({ort.__version__}); it has {available}. "
            "Replay on one of those (--provider NAME), or install the build that has it"
        )
    try:
        session = ort.InferenceSession(str(model), providers=[wanted])
    except Exception as exc:
        raise ReplayError(f"ONNX Runtime cannot load {model}: {exc}") from exc
    if wanted not in session.get_providers():
        raise ReplayError(
            f"{wanted} is installed but could not start (the session runs on {session.get_providers()}); "
            "check its libraries and device, or replay on another --provider"
        )
    return session


def _context(data: Path, outputs: list[str]) -> dict[str, OutputContext]:
    """The reference's noise and the padding the check knew at each output, where recorded."""
    out = {}
    for k, name in enumerate(outputs):
        noise, padding = data / f"noise_{k}.pb", data / f"padding_{k}.pb"
        out[name] = OutputContext(
            noise=_load(noise) if noise.is_file() else None, exclude=_load(padding) if padding.is_file() else None
        )
    return out


def replay(case: Path, provider: str = "CPUExecutionProvider") -> tuple[bool, list[str]]:
    """(parity holds, one line per data set). Raises :class:`ReplayError` when there is nothing to replay."""
    if not case.is_dir():
        raise ReplayError(f"{case} is not a directory; pass a directory written by --onnx-artifacts")
    if not (case / "model.onnx").is_file():
        raise ReplayError(f"{case} has no model.onnx; pass a directory written by --onnx-artifacts")
    sets = sorted(p for p in case.glob("test_data_set_*") if p.is_dir())
    if not sets:
        raise ReplayError(f"{case} has no test_data_set_* directory: there is nothing to replay")
    recorded = _record(case)
    session = _session(case / "model.onnx", provider)
    names = [i.name for i in session.get_inputs()]
    ok, lines = True, []
    for data in sets:
        feed = {name: _load(data / f"input_{k}.pb") for k, name in enumerate(names)}
        outputs = _output_names(recorded, data, len(session.get_outputs()))
        policy = _policy(recorded, outputs)
        expected = {name: _load(data / f"output_{k}.pb") for k, name in enumerate(outputs)}
        try:
            got = session.run(None, feed)
        except Exception as exc:
            lines.append(f"{data.name}: ONNX Runtime failed: {type(exc).__name__}: {str(exc)[:500]}")
            ok = False
            continue
        # by position under the model's names: a lost (or an added) output is a count the rule refuses
        extra = [f"graph output {k} ({o.name})" for k, o in enumerate(session.get_outputs()) if k >= len(outputs)]
        got_by_position = dict(zip(outputs + extra, got))
        verdict = compare(expected, got_by_position, policy, check_names=False, context=_context(data, outputs))
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
    parser.add_argument(
        "--provider", default="CPUExecutionProvider", help="ONNX Runtime's name (CUDAExecutionProvider) or cuda, ..."
    )
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
