"""ONNX Runtime runner: one ONNX file on one execution provider, with its log and node placement.

Session creation is where providers go wrong quietly: ONNX Runtime prints a provider's errors and
ignored options to the process's stderr and falls back to CPU. The runner captures that output
(so it neither leaks raw nor gets lost), puts it in the report, and refuses a silent fallback.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import sys
import tempfile
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OnnxParityError
from ..graph import edits as graph_edits
from ..providers import precision, registry

if TYPE_CHECKING:
    import numpy as np

OPTIMIZATION_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ENTRY = re.compile(r"\[([WEF]):onnxruntime:[^\]]*\]\s*")
#: Log lines about options or settings the provider did not take: the user must see these.
_IGNORED = re.compile(r"option|ignored|invalid|unknown|unsupported|not supported", re.IGNORECASE)


class ProviderUnavailable(OnnxParityError):
    """The provider cannot run here (not installed, no device, libraries fail to load): a skip, not a failure."""

    def __init__(self, reason: registry.Unavailable) -> None:
        super().__init__(reason.message)
        self.kind = reason.kind


def versions() -> dict[str, str]:
    import onnx

    return {"onnx": onnx.__version__, "onnxruntime": require().__version__}


def require() -> Any:
    """The onnxruntime module, or a message naming what to install (it comes in flavours, one per install)."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise OnnxParityError(
            f"ONNX Runtime is not installed ({exc}). Install one flavour: pip install 'pytest-onnxparity[cpu]' "
            "(onnxruntime), '[openvino]' (onnxruntime-openvino) or '[gpu]' (onnxruntime-gpu); they provide the "
            "same onnxruntime module, so install only one."
        ) from None
    return onnxruntime


@dataclasses.dataclass
class Placement:
    """Which providers a session uses and how many graph nodes each one executed."""

    providers: list[str]
    nodes: dict[str, int] = dataclasses.field(default_factory=dict)
    fallback_ops: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Node name (as profiled: a provider's fused subgraph counts as one) -> the provider that ran it.
    by_node: dict[str, str] = dataclasses.field(default_factory=dict)


@contextlib.contextmanager
def native_output(lines: list[str]) -> Iterator[None]:
    """Capture what ONNX Runtime writes to fd 2 (its C++ log) and to sys.stdout (its Python fallback notice)."""
    sys.stderr.flush()
    saved = os.dup(2)
    python_out = io.StringIO()
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(python_out):
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = _ANSI.sub("", sink.read().decode(errors="replace") + python_out.getvalue())
            lines.extend(log_entries(text))


def log_entries(text: str) -> list[str]:
    """ONNX Runtime's warnings and errors, one string each, without timestamps and source locations."""
    parts = _ENTRY.split(text)
    entries = []
    for severity, message in zip(parts[1::2], parts[2::2]):
        message = re.split(r"\n\d{4}-\d\d-\d\d \d", message)[0].strip()
        entries.append(f"[{'warning' if severity == 'W' else 'error'}] {message}")
    if "EP Error" in text:
        entries.append("[error] " + " ".join(line for line in text.splitlines() if "EP Error" in line))
    return list(dict.fromkeys(entries))


def ignored_settings(log: list[str]) -> list[str]:
    """The log entries that say an option or setting was not applied."""
    return [line for line in log if _IGNORED.search(line)]


def open_session(path: str, short: str, options: Mapping[str, str], so: Any, log: list[str]) -> tuple[Any, list[str]]:
    """An InferenceSession on ``short`` (CPU as the fallback ONNX Runtime adds); raises on a silent fallback."""
    ort = require()
    reason = registry.unavailable(short)
    if reason is not None:
        raise ProviderUnavailable(reason)
    defined = registry.definition(short)
    with native_output(log):
        try:
            if defined.create_session is not None:
                session = defined.create_session(path, options, so)
            elif short == "cpu":
                session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            elif registry.plugin_devices(short):
                so.add_provider_for_devices(registry.plugin_devices(short), dict(options))
                session = ort.InferenceSession(path, so)
            else:
                session = ort.InferenceSession(
                    path, so, providers=[(defined.ort_name, dict(options)), "CPUExecutionProvider"]
                )
        except Exception as exc:
            raise OnnxParityError(f"ONNX Runtime could not create a session on {short}: {exc}") from exc
    used = session.get_providers()
    if short != "cpu" and defined.create_session is None and defined.ort_name not in used:
        missing = registry.diagnose_fallback(short, "\n".join(log))
        if missing is not None:
            raise ProviderUnavailable(missing)
        raise OnnxParityError(
            f"ONNX Runtime was asked for {defined.ort_name} but the session runs on {used}: the provider failed to "
            f"initialise and ONNX Runtime fell back silently. Its log: {' | '.join(log) or '(empty)'}. Check the "
            f"provider options {dict(options) or '{}'} and the provider's libraries."
        )
    return session, used


class OrtRunner:
    """ONNX Runtime on one execution provider: ``infer(feed) -> {output: array}``.

    With ``profile=True`` the first ``infer`` is profiled to learn where each node ran (``placement``).
    ``feed_names`` maps graph inputs to the feed's keys where they differ; ``extra_outputs`` names intermediate
    values to return too.
    """

    def __init__(
        self,
        path: str,
        provider: str = "cpu",
        options: Mapping[str, str] | None = None,
        *,
        optimization: str = "all",
        threads: int | None = None,
        profile: bool = False,
        feed_names: Mapping[str, str] | None = None,
        extra_outputs: Sequence[str] = (),
        spinning: bool = False,
    ) -> None:
        ort = require()
        self.path, self.provider, self.options = os.fspath(path), provider, dict(options or {})
        self.name = f"onnxruntime-{provider}"
        self.optimization = optimization
        so = ort.SessionOptions()
        so.log_severity_level = 2  # warnings: ignored options must reach the user (captured, not printed)
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization])
        if threads:
            so.intra_op_num_threads = threads
        if not spinning:
            # Idle threads spinning after a run take the cores the framework's next run needs (a tiny MLP's forward
            # pass: 15 ms instead of 0.1 ms on 2 cores). Timed runs (benchmarks) keep ONNX Runtime's default.
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._profile_dir = tempfile.TemporaryDirectory(prefix="onnxparity_profile_") if profile else None
        if self._profile_dir is not None:
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(self._profile_dir.name) / "ort")
        self.log: list[str] = []
        # Edited copies of the graph (extra outputs, bf16 hosted as float32) live until close(), or until the runner
        # goes (quietly: TemporaryDirectory would warn at garbage collection).
        host_dir = Path(tempfile.mkdtemp(prefix="onnxparity_graph_"))
        self._remove_copies = weakref.finalize(self, shutil.rmtree, host_dir, ignore_errors=True)
        runnable = self.path
        if extra_outputs:
            runnable = graph_edits.with_outputs(runnable, extra_outputs, host_dir / "outputs.onnx")
        runnable, self._bf16_outputs = graph_edits.host_types(runnable, host_dir)
        self.session, used = open_session(runnable, provider, self.options, so, self.log)
        self.placement = Placement(used)
        self.precision = precision.precision(provider, self.options)
        #: Runs after the first log errors only (a declared shape the output contradicts is judged elsewhere).
        self._quiet = ort.RunOptions()
        self._quiet.log_severity_level = 3
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        #: Graph input -> the feed's key for it (the model's input names may differ from a user file's).
        self.feed_names = {name: (feed_names or {}).get(name, name) for name in self.input_names}

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = {name: feed[key] for name, key in self.feed_names.items()}
        arrays = {n: a.astype("float32") if a.dtype.name == "bfloat16" else a for n, a in arrays.items()}
        if self._profile_dir is None:
            values = self.session.run(None, arrays, self._quiet)
        else:  # the first run: profiled (where did each node run?), its log captured
            with native_output(self.log):
                values = self.session.run(None, arrays)
            self.placement = placement_from_profile(self.session, self.provider)
            self._profile_dir.cleanup()
            self._profile_dir = None
        out = dict(zip(self.output_names, values))
        for name in self._bf16_outputs:
            from ..inputs.spec import np_dtype

            out[name] = out[name].astype(np_dtype("bfloat16"))
        return out

    def close(self) -> None:
        """Release the session and the graph copies now (a check's runners go when it ends, not when a garbage
        collection finds them in a cycle)."""
        self.session = None
        self._remove_copies()
        if self._profile_dir is not None:
            self._profile_dir.cleanup()
            self._profile_dir = None

    def report_fields(self) -> dict[str, Any]:
        """What this runner knows about its run, under the report's field names."""
        return {
            "executed_providers": self.placement.providers,
            "node_placement": self.placement.nodes,
            "fallback_nodes": self.placement.fallback_ops,
            "provider_options": dict(self.options),
            "precision": self.precision.text(),
            "provider_log": list(self.log),
        }

    def session_options(self) -> dict[str, Any]:
        so = self.session.get_session_options()
        try:
            spinning = so.get_session_config_entry("session.intra_op.allow_spinning") != "0"
        except RuntimeError:  # never set: ONNX Runtime's default, spinning
            spinning = True
        return {
            "intra_op_num_threads": so.intra_op_num_threads,
            "inter_op_num_threads": so.inter_op_num_threads,
            "graph_optimization_level": str(so.graph_optimization_level).split(".")[-1],
            "idle_threads_spin": spinning,
        }


def placement_from_profile(session: Any, short: str) -> Placement:
    """End profiling and count the nodes each provider executed (ONNX Runtime's own record)."""
    profile = session.end_profiling()
    events = json.loads(Path(profile).read_text())
    Path(profile).unlink(missing_ok=True)
    attribute = registry.definition(short).attribute_node
    nodes: dict[str, set[str]] = collections.defaultdict(set)
    ops: dict[str, str] = {}
    for event in events:
        args = event.get("args") or {}
        if event.get("cat") == "Node" and "provider" in args:
            node, op = event["name"].rsplit("_kernel_time", 1)[0], args.get("op_name", "?")
            ran = registry.FULL_NAMES.get(args["provider"], args["provider"])
            nodes[attribute(node, op, args["provider"]) if attribute else ran].add(node)
            ops[node] = op
    fallback = collections.Counter(ops[n] for provider, names in nodes.items() if provider != short for n in names)
    by_node = {node: provider for provider, names in nodes.items() for node in names}
    placement = Placement(session.get_providers(), {p: len(n) for p, n in nodes.items()}, dict(fallback), by_node)
    if short != "cpu" and nodes and not nodes.get(short):
        raise OnnxParityError(
            f"{registry.definition(short).ort_name} executed none of the graph's {sum(placement.nodes.values())} "
            f"nodes: every node fell back to CPU ({', '.join(f'{op} x{n}' for op, n in sorted(fallback.items()))}). "
            "The result would only test the CPU provider; check the provider's supported operators and opset."
        )
    return placement
