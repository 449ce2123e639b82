"""Hooks of pytest-onnxparity, for conftest files and plugins. Standard library and pytest only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.hookspec
def pytest_onnxparity_adapters() -> list[tuple[str, Callable[[Any], bool], str]]:  # type: ignore[empty-body]
    """Add framework adapters: return ``[(framework, detector, module), ...]``.

    ``detector(model) -> bool`` must not import its framework (look at ``sys.modules``); ``module`` names an
    importable module with ``prepare(model, example_inputs, settings)`` returning an object that follows
    :class:`pytest_onnxparity.adapters.PreparedModel`. Added adapters are tried before the built-in ones.
    """


@pytest.hookspec
def pytest_onnxparity_providers() -> list[Any]:  # type: ignore[empty-body]
    """Add execution providers: return ``[pytest_onnxparity.ProviderDefinition(...), ...]``.

    An added provider is chosen by its name in ``--onnx-providers`` like a built-in one; its callables
    say whether it can run here, open its session and tell the precision it computes in (a stand-in
    for hardware the machine lacks, or a custom ONNX Runtime build).
    """
