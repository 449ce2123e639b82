"""Runners: every runtime the engine compares behind one small interface (after Polygraphy's runners).

A runner has a ``name`` (what it is: ``torch``, ``onnxruntime-cpu``) and ``infer(feed) -> {output: array}``
on numpy inputs keyed by input name. The framework runners are the adapters' prepared models
(``adapters/``); ``runners/onnxruntime.py`` runs an ONNX file on one execution provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np


class Runner(Protocol):
    name: str
    output_names: tuple[str, ...]

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs on ``feed``, in ``output_names`` order, as host numpy arrays."""
        ...
