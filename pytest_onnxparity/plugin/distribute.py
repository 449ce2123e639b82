"""pytest-xdist: one export per model per run, through xdist's own ``loadgroup`` scheduling.

A parity test's items (one per provider, variant and benchmark case) share one export, kept in the process
that made it. Each item is put in a group of its model, the way xdist's ``xdist_group`` marker does (a
``@group`` suffix on its node id, which xdist's ``LoadGroupScheduling`` reads), so xdist sends all of them to
one worker while the models spread over all workers; under ``-n`` without ``--dist`` the plugin makes
``loadgroup`` the mode. A ``--dist`` the user chose is kept, with a warning when it costs exports.
"""

from __future__ import annotations

from typing import Any

import pytest

from .items import PLUGIN_PARAMS

#: The worker input that tells a worker its controller distributes by group (its own ``--dist`` is "no").
GROUPED = "onnx_parity_loadgroup"
#: The modes that can send one test's items to several workers (loadscope and loadfile keep a test together;
#: "each" runs every item on every worker, by design).
SPLITTING = ("load", "worksteal")


def choose_mode(config: pytest.Config) -> None:
    """Before xdist reads it: ``-n`` without ``--dist`` distributes by group instead of xdist's ``load``."""
    option = config.option
    if getattr(option, "numprocesses", None) and getattr(option, "dist", None) == "no" and not option.distload:
        option.dist = "loadgroup"
        if getattr(option, "maxworkerrestart", None) is None:
            # pytest-xdist 3.8's loadgroup scheduling never hands work to a worker started in place of one that
            # crashed: the session would wait forever. Without a restart the crashed worker's other items run on
            # the workers left (the crash itself fails its item, as ever).
            option.maxworkerrestart = 0


def tell_worker(node: Any) -> None:
    """The worker parses the command line again, without the mode the controller chose: pass it on."""
    node.workerinput[GROUPED] = node.config.getvalue("dist") == "loadgroup"


def configure(config: pytest.Config, providers: int, variants: int) -> None:
    """On a worker, group as the controller does; on a controller under a splitting mode, warn what it costs."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        if workerinput.get(GROUPED):
            config.option.loadgroup = True  # what xdist's worker reads to suffix node ids with their group
        return
    dist, workers = getattr(config.option, "dist", "no"), _workers(config)
    items = providers * (1 + variants)
    if dist in SPLITTING and workers > 1 and items > 1:
        from ..errors import OnnxParityWarning

        config.issue_config_time_warning(
            OnnxParityWarning(
                f"--dist {dist} may send a parity test's {items} items ({providers} provider(s) x "
                f"{1 + variants} export/variants) to different workers, and each worker that gets one exports the "
                f"model again: up to {min(items, workers)} exports per model instead of 1. Leave out --dist (with -n "
                "the plugin distributes by model: --dist loadgroup) or pass --dist loadgroup, loadscope or loadfile."
            ),
            stacklevel=2,
        )


def group_items(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a worker that distributes by group: each parity item's node id ends in ``@`` and its group: the model's,
    or the test's own ``xdist_group`` (which holds all of the test's items, so its models' too).

    What xdist's worker does for an ``xdist_group`` marker, done here because xdist 3.8 writes the suffix to
    ``Item._nodeid``, which pytest 9.2 no longer reads (pytest-dev/pytest-xdist#1386: the marker silently
    stops grouping).
    """
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        if "onnx_parity" not in getattr(item, "fixturenames", ()):
            continue
        own = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
        )
        group = "_".join(own) if own else group_name(item)  # xdist's own joining of several groups
        if item.nodeid.endswith(f"@{group}"):  # an older pytest, where xdist's suffix took
            continue
        grouped = f"{item.nodeid}@{group}"
        if hasattr(item, "_id"):  # pytest >= 9.2: a structured id, whose text is the string it was parsed from
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(grouped)
        else:
            item._nodeid = grouped  # type: ignore[attr-defined]


def group_name(item: pytest.Item) -> str:
    """The test function and its own parameters (not the plugin's), the same in every worker: a value's repr for
    plain values, else its index (a repr may hold a memory address, and xdist needs every worker's ids to agree).
    Without ``[`` ``]`` ``@``, which xdist's grouping splits node ids on."""
    callspec = getattr(item, "callspec", None)
    params = getattr(callspec, "params", {})
    indices = getattr(callspec, "indices", {})
    parts = [
        f"{name}={params[name]!r}" if _plain(params[name]) else f"{name}#{indices.get(name, '?')}"
        for name in sorted(params)
        if name not in PLUGIN_PARAMS
    ]
    name = item.nodeid.split("::")[-1].split("[")[0] + (f"({','.join(parts)})" if parts else "")
    return name.translate(str.maketrans("[]@", "()_"))


def _plain(value: Any) -> bool:
    return value is None or (type(value) in (str, int, float, bool) and len(repr(value)) <= 40)


def _workers(config: pytest.Config) -> int:
    """How many workers the ``--tx`` specs start (``-n 2`` is ``2 x popen``; ``--tx 3*popen`` is three)."""
    specs = getattr(config.option, "tx", None) or []
    return sum(int(spec.split("*")[0]) if spec.split("*")[0].isdigit() else 1 for spec in specs)
