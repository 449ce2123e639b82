"""Where a check's time goes: seconds per phase, accumulated (reported in the report, JSON and summary)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

#: The phases, in the order a check runs them.
PHASES = (
    "export",
    "sessions",
    "inputs",
    "reference",
    "reference noise",
    "onnxruntime",
    "provider noise",
    "compare",
    "search",
    "localize",
)


class Timings(dict[str, float]):
    """Seconds per phase; ``with timings.phase("reference"): ...`` adds to it."""

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - start

    def rounded(self) -> dict[str, float]:
        """In the order of :data:`PHASES` (then any other), milliseconds precision."""
        order = [p for p in PHASES if p in self] + [p for p in self if p not in PHASES]
        return {p: round(self[p], 3) for p in order}
