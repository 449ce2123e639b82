"""Runners: every runtime the engine compares behind one small interface (after Polygraphy's runners).

A runner has a ``name`` (what it is: ``torch``, ``onnxruntime-cpu``) and ``infer(feed) -> {output: array}``
on numpy inputs keyed by input name. The framework runners are the adapters' prepared models
(``adapters/``); ``runners/onnxruntime.py`` runs an ONNX file on one execution provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

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

    def close(self) -> None:
        """Release what the runner holds (sessions, graph copies) now rather than at a garbage collection."""
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
            self._runner.close()
            self._runner = None


#: What the memo keeps: a runner's outputs, or a tuple of them and what was learnt with them.
Memoized = TypeVar("Memoized")


class ReferenceMemo:
    """The reference's outputs by (model, device, inputs, recipe): another provider's item of the same model checks
    the same input sets, so it need not run the framework again; likewise ONNX Runtime's CPU outputs of one graph
    file, which the CPU item records and the other providers' items judge the conversion by and compare with, and
    the deviation a reduced precision was measured to cause on them (``emulation.py``). Bounded by a memory
    budget."""

    def __init__(self, budget_bytes: int = 512 * 2**20) -> None:
        self._store: dict[Any, Any] = {}
        self._left = budget_bytes

    def __contains__(self, key: Any) -> bool:
        return key in self._store

    def put(self, key: Any, value: Any) -> None:
        """Remember ``value`` for ``key`` (within the memory budget)."""
        size = _nbytes(value)
        if size <= self._left:
            self._store[key] = value
            self._left -= size

    def get(self, key: Any, compute: Callable[[], Memoized]) -> Memoized:
        """What ``compute`` returned for ``key`` (arrays by name, or a tuple of such and plain values), computed
        once; a ModelRejected is remembered and raised again."""
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
        self.put(key, value)
        return value


def _nbytes(value: Any) -> int:
    if isinstance(value, Mapping):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return int(getattr(value, "nbytes", 0))
