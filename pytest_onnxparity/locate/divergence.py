"""What localization found: :class:`Divergence`, the first place a failing check's values part ways."""

from __future__ import annotations

import dataclasses
from typing import Any

#: A module "diverges" when its output uses this many times its tolerance (rounding alone stays far below);
#: failing that, the first one past its tolerance at all.
CLEAR = 10.0


@dataclasses.dataclass
class Divergence:
    stage: str = "unknown"
    stage_detail: str = ""
    module: str | None = None
    module_type: str | None = None
    nodes: list[str] = dataclasses.field(default_factory=list)
    op_types: list[str] = dataclasses.field(default_factory=list)
    max_abs_diff: float = 0.0
    allowed: float = 0.0
    #: For a node of no module: where the exporter says it came from (a Python line, a scope), and the module
    #: whose input it computes.
    source: str = ""
    feeds: str = ""
    #: Named from the graph's outputs alone (no module map): the node computing the first divergent output.
    from_outputs: bool = False
    #: For a provider: which provider ran the first divergent node.
    placement: str = ""
    #: How the error grows after the first divergence: "module: max abs diff".
    after: list[str] = dataclasses.field(default_factory=list)
    #: The artifact's nodes on the divergent path (the divergent module's, or the node named).
    focus: list[str] = dataclasses.field(default_factory=list, repr=False)
    #: An artifact against a fresh export, the divergent path first.
    differences: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    #: For the repro subgraph: (its input values, its output values, every value of the ONNX run, expected).
    repro: tuple[list[str], list[str], dict[str, Any], dict[str, Any]] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    def line(self) -> str:
        """``first divergence: module 'blocks.3.act' (LeakyReLU) -> ONNX node '...' (LeakyRelu): ...; conversion``."""
        nodes = ", ".join(f"{n!r} ({o})" for n, o in zip(self.nodes[:3], self.op_types[:3]))
        word = "layer" if is_layer(self.module_type or "") else "module"
        where = (
            f"{word} {self.module!r} ({self.module_type}) -> ONNX node {nodes}"
            if self.module
            else (f"ONNX node {nodes}" if nodes else "no module or node could be singled out")
        )
        where += f" at {self.source}" if self.source else ""
        where += f", the input of {self.feeds}" if self.feeds else ""
        text = f"first divergence: {where}"
        if self.max_abs_diff:
            text += f": max abs diff {self.max_abs_diff:.3g}{f' (allowed {self.allowed:.3g})' if self.allowed else ''}"
        text += f"; {self.stage}" + (f" ({self.stage_detail})" if self.stage_detail else "")
        return text + (f"; {self.differences[0]}" if self.differences else "")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("repro")
        out.pop("focus")
        out["line"] = self.line()
        return out


def is_layer(kind: str) -> bool:
    """A Keras layer's class path (a torch module's is ``torch.nn...``)."""
    return kind.startswith(("keras", "tf_keras"))
