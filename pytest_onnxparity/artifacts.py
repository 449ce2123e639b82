"""Repro artifacts of a failing check in ONNX's test-data layout, replayable without the framework::

    DIR/<test>-<hash>/model.onnx
    DIR/<test>-<hash>/test_data_set_0/input_0.pb ... output_0.pb ...   (outputs are the reference's)
    DIR/<test>-<hash>/parity.json                                      (tolerances, recipe, report)

One directory per check, named by the test id and a hash of the full id (ids that clean to the same text
never collide). The plugin deletes only files its own manifest lists: a user's file in there survives.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import CheckResult

#: Lists the files the plugin wrote into a directory, so a later run replaces those and nothing else.
MANIFEST = ".onnx_parity_manifest.json"


def slug(nodeid: str, limit: int = 80) -> str:
    """A file-system-safe name for a test id: readable prefix + hash of the whole id (unique per id)."""
    digest = hashlib.sha1(nodeid.encode()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', nodeid).strip('_.')[:limit]}-{digest}"


def save_failure(root: Path, nodeid: str, index: int, result: CheckResult) -> Path:
    """Write the model and the failing inputs/outputs under ``root``; return the case directory."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    case = result.case
    assert case is not None
    target = root / slug(f"{nodeid}#{index}" if index else nodeid)
    data = target / "test_data_set_0"
    _clear_own_files(target)
    data.mkdir(parents=True, exist_ok=True)
    written = ["model.onnx", "README.txt", "parity.json"]
    # One self-contained file (external weights pulled in), so the directory replays on its own.
    onnx.save(onnx.load(result.exported.path), str(target / "model.onnx"))
    info = result.exported.graph
    feed_names = dict(zip(info.inputs, case.feed)) if set(info.inputs) != set(case.feed) else {}
    for k, name in enumerate(info.inputs):
        array = case.feed[feed_names.get(name, name)]
        (data / f"input_{k}.pb").write_bytes(numpy_helper.from_array(array, name).SerializeToString())
        written.append(f"test_data_set_0/input_{k}.pb")
    for k, (name, array) in enumerate(zip(info.outputs, (case.reference or {}).values())):
        (data / f"output_{k}.pb").write_bytes(numpy_helper.from_array(array, name).SerializeToString())
        written.append(f"test_data_set_0/output_{k}.pb")
        known = case.context.get(list(case.reference or {})[k])
        extras = {"noise": None if known is None else known.noise, "padding": None if known is None else known.exclude}
        for kind, value in extras.items():  # what the rule knew at this output, so replay judges alike
            if value is not None:
                full = np.broadcast_to(np.asarray(value), array.shape).copy()
                (data / f"{kind}_{k}.pb").write_bytes(numpy_helper.from_array(full, name).SerializeToString())
                written.append(f"test_data_set_0/{kind}_{k}.pb")
    report = result.report
    reference = case.reference or {}
    record = {
        "nodeid": nodeid,
        "provider": report.provider,
        "failure_kind": report.failure.kind if report.failure else None,
        # conversion: the tolerances below judged ONNX Runtime's CPU provider (replay's default) against the model
        "verdict": report.failure.verdict if report.failure else None,
        # Per output position: the model's name and the (atol, rtol) the check used, for replay's rule.
        "outputs": [
            {"name": name, "tolerance": result.policy.for_output(name, array.dtype.name)}
            for name, array in reference.items()
        ],
    }
    (target / "parity.json").write_text(json.dumps(record, indent=2))
    (target / "README.txt").write_text(
        f"Failing parity check of {nodeid} ({report.provider}).\n{report.text()}\n\n"
        f"Replay without the framework:\n  python -m pytest_onnxparity.replay {target}\n"
    )
    if result.divergence is not None and result.divergence.repro is not None:
        written += _localized(target, result)
    (target / MANIFEST).write_text(json.dumps({"written_by": "pytest-onnxparity", "files": written}))
    return target


def _localized(target: Path, result: CheckResult) -> list[str]:
    """The subgraph around the first divergent module/node, its inputs as ONNX computed them and the outputs the
    reference expects there, and the localization: ``python -m pytest_onnxparity.replay DIR/localized``."""
    import onnx
    from onnx import numpy_helper

    found = result.divergence
    assert found is not None and found.repro is not None
    inputs, outputs, values, expected = found.repro
    local = target / "localized"
    data = local / "test_data_set_0"
    data.mkdir(parents=True, exist_ok=True)
    try:
        sub = onnx.utils.Extractor(onnx.load(result.exported.path)).extract_model(inputs, outputs)
    except Exception as exc:  # a subgraph onnx cannot cut out: the localization JSON still says where
        (local / "localization.json").write_text(json.dumps({**found.to_dict(), "subgraph": f"not extracted: {exc}"}))
        return ["localized/localization.json"]
    onnx.save(sub, str(local / "model.onnx"))
    written = ["localized/model.onnx", "localized/localization.json", "localized/parity.json"]
    for k, name in enumerate(i.name for i in sub.graph.input if i.name in values):
        (data / f"input_{k}.pb").write_bytes(numpy_helper.from_array(values[name], name).SerializeToString())
        written.append(f"localized/test_data_set_0/input_{k}.pb")
    for k, name in enumerate(outputs):
        (data / f"output_{k}.pb").write_bytes(numpy_helper.from_array(expected[name], name).SerializeToString())
        written.append(f"localized/test_data_set_0/output_{k}.pb")
    tolerance = [{"name": n, "tolerance": result.policy.for_output(n, expected[n].dtype.name)} for n in outputs]
    (local / "parity.json").write_text(json.dumps({"outputs": tolerance, "noise_factor": 0.0}, indent=2))
    (local / "localization.json").write_text(json.dumps(found.to_dict(), indent=2, default=str))
    return written


def _clear_own_files(target: Path) -> None:
    """Remove what an earlier run of the plugin wrote here (per its manifest); leave everything else."""
    manifest = target / MANIFEST
    if not manifest.is_file():
        return
    try:
        listed = json.loads(manifest.read_text()).get("files", [])
    except (ValueError, AttributeError):
        return
    for name in listed:
        path = (target / str(name)).resolve()
        if target.resolve() in path.parents and path.is_file():
            path.unlink()
