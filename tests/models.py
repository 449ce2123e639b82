"""Small helpers the inner test sessions import (``from tests.models import export_file``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def export_file(model: Any, example: Any, path: Path | str, input_name: str = "x") -> str:
    """``model`` exported by the dynamo exporter with a dynamic batch: the "artifact" a user would ship."""
    import torch

    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=True,
        input_names=[input_name],
        output_names=["output"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    return str(path)
