"""Runners: every runtime the engine compares behind one small interface (after Polygraphy's runners).

A runner has a ``name`` (what it is: ``torch``, ``onnxruntime-cpu``) and ``infer(feed) -> {output: array}``
on numpy inputs keyed by input name. The framework runners are the adapters' prepared models
(``adapters/``); ``runners/onnxruntime.py`` runs an ONNX file on one execution provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ModelRejected

if TYPE_CHECKING:
    import numpy as np


class Runner(Protocol):
    @property
    def name(self) -> str:
        """What it is: ``torch``, ``onnxruntime-cpu``."""
        ...

    @property
    def output_names(self) -> tuple[str, ...]: ...

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs on ``feed``, in ``output_names`` order, as host numpy arrays."""
        ...


class Deferred:
    """A runner opened on its first use: where every output asked of it is already memoized, never."""

    def __init__(self, name: str, open_runner: Callable[[], Runner]) -> None:
        self.name = name
        self._open = open_runner
        self._runner: Runner | None = None

    def opened(self) -> Runner:
        if self._runner is None:
            self._runner = self._open()
        return self._runner

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.opened().output_names

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.opened().infer(feed)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()  # type: ignore[attr-defined]
            self._runner = None


class ReferenceMemo:
    """The reference's outputs by (model, device, inputs, recipe): another provider's item of the same model checks
    the same input sets, so it need not run the framework again; likewise ONNX Runtime's CPU outputs of one graph
    file, which the CPU item records and the other providers compare with. Bounded by a memory budget."""

    def __init__(self, budget_bytes: int = 512 * 2**20) -> None:
        self._store: dict[Any, dict[str, np.ndarray] | ModelRejected] = {}
        self._left = budget_bytes

    def __contains__(self, key: Any) -> bool:
        return key in self._store

    def get(self, key: Any, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        if key in self._store:
            hit = self._store[key]
            if isinstance(hit, ModelRejected):
                raise hit
            return hit
        try:
            value = compute()
        except ModelRejected as exc:
            self._store[key] = exc
            raise
        size = sum(array.nbytes for array in value.values())
        if size <= self._left:
            self._store[key] = value
            self._left -= size
        return value
