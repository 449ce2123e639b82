"""A stand-in for the plugin that checks nothing: the floor of a run, for ``benchmarks/minimum.py``.

    pytest sample_models/test_torch_models.py -p no:onnxparity -p benchmarks.no_check

Every test builds its model as usual (its imports included) and is skipped where it would call the check, so the
run costs what any run of these tests costs with or without a parity check: the interpreter, pytest, collection,
and the user's own imports (torch; transformers for the BERT sample). No cache can take that away.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "onnx_parity: (the stand-in of benchmarks/no_check.py)")


@pytest.fixture
def onnx_parity() -> Callable[..., Any]:
    def check(model: Any, example_inputs: Any, **options: Any) -> Any:
        pytest.skip("benchmarks/no_check.py: the model was built; no parity check runs")

    return check
