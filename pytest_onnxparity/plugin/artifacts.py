"""Repro artifacts of a failing check in ONNX's test-data layout, replayable without the framework::

    DIR/<test>-<hash>/model.onnx
    DIR/<test>-<hash>/test_data_set_0/input_0.pb ... output_0.pb ...   (outputs are the reference's)
    DIR/<test>-<hash>/parity.json                                      (tolerances, recipe, report)

One directory per check, named by the test id and a hash of the full id (ids that clean to the same text
never collide). The plugin deletes only files its own manifest lists, and never writes over a file it did not
write: a directory of that name without the manifest is someone else's, and the case goes to ``<name>~1``
(``~2`` ...) instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine.check import CheckResult

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
    target = _own_directory(root / slug(f"{nodeid}#{index}" if index else nodeid))
    _clear_own_files(target)
    with _Writer(target) as out:
        # One self-contained file (external weights pulled in), so the directory replays on its own.
        out.create("model.onnx", onnx.load(result.exported.path).SerializeToString())
        info = result.exported.graph
        feed_names = dict(zip(info.inputs, case.feed)) if set(info.inputs) != set(case.feed) else {}
        for k, name in enumerate(info.inputs):
            array = case.feed[feed_names.get(name, name)]
            out.create(f"test_data_set_0/input_{k}.pb", numpy_helper.from_array(array, name).SerializeToString())
        reference = case.reference or {}
        for k, (name, array) in enumerate(zip(info.outputs, reference.values())):
            out.create(f"test_data_set_0/output_{k}.pb", numpy_helper.from_array(array, name).SerializeToString())
            known = case.context.get(list(reference)[k])
            extras = {
                "noise": None if known is None else known.noise,
                "padding": None if known is None else known.exclude,
            }
            for kind, value in extras.items():  # what the rule knew at this output, so replay judges alike
                if value is not None:
                    full = np.broadcast_to(np.asarray(value), array.shape).copy()
                    out.create(
                        f"test_data_set_0/{kind}_{k}.pb", numpy_helper.from_array(full, name).SerializeToString()
                    )
        report, policy = result.report, result.policy
        record = {
            "nodeid": nodeid,
            "provider": report.provider,
            "failure_kind": report.failure.kind if report.failure else None,
            # conversion: the tolerances below judged ONNX Runtime's CPU provider (replay's default) against the model
            "verdict": report.failure.verdict if report.failure else None,
            # Everything the verdict's rule used, for replay's: per output position the model's name and the
            # (atol, rtol), the multiple of the reference's own noise tolerated, a variant's metric thresholds.
            "outputs": [
                {"name": name, "tolerance": policy.for_output(name, array.dtype.name)}
                for name, array in reference.items()
            ],
            "noise_factor": policy.noise_factor,
            "variant": policy.variant,
            "variant_metrics": policy.variant_metrics,
        }
        out.create("parity.json", json.dumps(record, indent=2, default=str).encode())
        readme = (
            f"Failing parity check of {nodeid} ({report.provider}).\n{report.text()}\n\n"
            f"Replay without the framework:\n  python -m pytest_onnxparity.replay {target}\n"
        )
        out.create("README.txt", readme.encode())
        if result.divergence is not None and result.divergence.repro is not None:
            _localized(out, result)
    return target


class _Writer:
    """Creates the case's files, each new (``open(..., "x")``: a file already there after the plugin's own were
    cleared is someone else's and stays), and lists them in the manifest, also when a write fails midway."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.files: list[str] = []

    def create(self, relative: str, content: bytes) -> None:
        path = self.target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("xb") as file:
            self.files.append(relative)
            file.write(content)

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.files:
            manifest = {"written_by": "pytest-onnxparity", "files": self.files}
            (self.target / MANIFEST).write_text(json.dumps(manifest))


def _own_directory(target: Path) -> Path:
    """``target``, or the first ``target~N`` the plugin may write in: one that does not exist, is empty, or holds
    its manifest (a directory of that name without it holds someone else's files)."""
    for n in range(100):
        candidate = target if n == 0 else target.with_name(f"{target.name}~{n}")
        if not candidate.exists() or (candidate / MANIFEST).is_file():
            return candidate
        if candidate.is_dir() and not any(candidate.iterdir()):
            return candidate
    raise FileExistsError(f"{target} and {target.name}~1 ... ~99 all hold files the plugin did not write")


def _localized(out: _Writer, result: CheckResult) -> None:
    """The subgraph around the first divergent module/node, its inputs as ONNX computed them and the outputs the
    reference expects there, and the localization: ``python -m pytest_onnxparity.replay DIR/localized``."""
    import onnx
    from onnx import numpy_helper

    found = result.divergence
    assert found is not None and found.repro is not None
    inputs, outputs, values, expected = found.repro
    try:
        sub = onnx.utils.Extractor(onnx.load(result.exported.path)).extract_model(inputs, outputs)
    except Exception as exc:  # a subgraph onnx cannot cut out: the localization JSON still says where
        located = {**found.to_dict(), "subgraph": f"not extracted: {exc}"}
        out.create("localized/localization.json", json.dumps(located, default=str).encode())
        return
    out.create("localized/model.onnx", sub.SerializeToString())
    for k, name in enumerate(i.name for i in sub.graph.input if i.name in values):
        out.create(
            f"localized/test_data_set_0/input_{k}.pb", numpy_helper.from_array(values[name], name).SerializeToString()
        )
    for k, name in enumerate(outputs):
        array = numpy_helper.from_array(expected[name], name)
        out.create(f"localized/test_data_set_0/output_{k}.pb", array.SerializeToString())
    tolerance = [{"name": n, "tolerance": result.policy.for_output(n, expected[n].dtype.name)} for n in outputs]
    out.create("localized/parity.json", json.dumps({"outputs": tolerance, "noise_factor": 0.0}, indent=2).encode())
    out.create("localized/localization.json", json.dumps(found.to_dict(), indent=2, default=str).encode())


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
