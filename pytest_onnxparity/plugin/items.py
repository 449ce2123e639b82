"""What identifies a parity item: the model it checks (shared by its provider, variant and benchmark items) and
what a test item keeps in its stash."""

from __future__ import annotations

from typing import Any

import pytest

#: The parity entries of one test item (shipped to the xdist controller on its call report).
ITEM_ENTRIES = pytest.StashKey[list[dict[str, Any]]]()
#: How many onnx_parity calls a test item made so far (the first one of a benchmark item is timed).
ITEM_CALLS = pytest.StashKey[int]()
#: The plugin's own parameters: the items of one model (provider, benchmark case, variant) differ only in these.
PLUGIN_PARAMS = ("onnx_parity_provider", "_onnx_parity_benchmark", "_onnx_parity_variant")


def model_key(node: Any) -> str:
    """The test without the plugin's own parameters: the same key for its provider and benchmark items."""
    params = getattr(getattr(node, "callspec", None), "params", {})
    rest = ",".join(f"{k}={v!r}" for k, v in sorted(params.items()) if k not in PLUGIN_PARAMS)
    base = node.nodeid.split("[")[0]
    return f"{base}[{rest}]" if rest else base


def test_id(node: Any) -> str:
    """The node id a user runs again: without the ``@group`` that pytest-xdist's loadgroup appends."""
    return without_group(str(node.nodeid))


def without_group(nodeid: str) -> str:
    """``nodeid`` without a loadgroup ``@group`` suffix (a parity item is always parametrized: it ends in ``]``)."""
    head, bracket, tail = nodeid.rpartition("]")
    return head + bracket if bracket and tail.startswith("@") else nodeid
