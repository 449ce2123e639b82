"""Repro artifacts of a failing check in ONNX's test-data layout, replayable without the framework::

DIR/<test>/model.onnx
DIR/<test>/test_data_set_0/input_0.pb ... output_0.pb ...   (outputs are the framework's)
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .check import Outcome

#: Marks a directory this plugin wrote, so a later run may replace it (and nothing else).
MARKER = ".onnx_parity_artifact"


def save_failure(root: Path, nodeid: str, index: int, outcome: Outcome) -> Path:
    """Write the model and the failing inputs/outputs under ``root``; return the case directory."""
    import onnx
    from onnx import numpy_helper

    from . import onnx_file

    case = outcome.failing_case
    assert case is not None and outcome.onnx_path is not None
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]
    base = f"{slug}_{index}" if index else slug
    target = root / base
    if (target / MARKER).is_file():
        shutil.rmtree(target)  # this plugin's own artifact of an earlier run
    suffix = 1
    while target.exists():  # something else lives there: never touch it
        suffix += 1
        target = root / f"{base}-{suffix}"
    data = target / "test_data_set_0"
    data.mkdir(parents=True)
    (target / MARKER).write_text("written by pytest-onnxparity; safe to delete\n")
    # One self-contained file (external weights pulled in), so the directory replays on its own.
    onnx.save(onnx.load(outcome.onnx_path), str(target / "model.onnx"))
    info = onnx_file.inspect(target / "model.onnx", user_file=False)
    for k, name in enumerate(info.inputs):
        (data / f"input_{k}.pb").write_bytes(numpy_helper.from_array(case.feed[name], name).SerializeToString())
    for k, (name, array) in enumerate(zip(info.outputs, case.reference or [])):
        (data / f"output_{k}.pb").write_bytes(numpy_helper.from_array(array, name).SerializeToString())
    (target / "README.txt").write_text(
        f"Failing parity check of {nodeid} ({outcome.report.provider}).\n"
        f"{outcome.report.text()}\n\n"
        f"Replay without the framework:\n  python -m pytest_onnxparity.replay {target}\n"
    )
    return target
