"""ONNX Runtime execution providers: names, availability, sessions, and where nodes really ran.

The name tables are plain data so the plugin can validate ``--onnx-providers`` without importing
onnxruntime; everything else imports it inside the functions.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import OnnxParityError

#: Short name -> ONNX Runtime's provider name.
SHORT_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
FULL_NAMES = {full: short for short, full in SHORT_NAMES.items()}

#: What to install to get each provider.
PACKAGES = {
    "cuda": "onnxruntime-gpu (and CUDA/cuDNN libraries)",
    "tensorrt": "onnxruntime-gpu with the TensorRT libraries",
    "openvino": "onnxruntime-ep-openvino (plugin provider) or onnxruntime-openvino",
    "rocm": "onnxruntime-rocm",
    "dml": "onnxruntime-directml (Windows)",
    "coreml": "onnxruntime on macOS",
}

#: Plugin execution providers shipped as Python packages: short name -> (module, registration name).
PLUGIN_PACKAGES = {"openvino": ("onnxruntime_ep_openvino", "OpenVINO")}

#: Looser float tolerances where a provider computes in reduced precision by design.
PROVIDER_DEFAULT_TOLERANCES = {
    "tensorrt": {"atol": 1e-3, "rtol": 1e-2},
    "coreml": {"atol": 1e-3, "rtol": 1e-2},
    "dml": {"atol": 1e-4, "rtol": 1e-3},
}

_registered_plugins: set[str] = set()


def parse_providers(text: str) -> list[str]:
    """``"cpu,cuda"`` or full names -> short names; raises ValueError naming the valid ones."""
    out = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        short = name.lower() if name.lower() in SHORT_NAMES else FULL_NAMES.get(name)
        if short is None:
            raise ValueError(
                f"unknown execution provider {name!r}; valid: {', '.join(SHORT_NAMES)} "
                f"(or ONNX Runtime's full names such as {SHORT_NAMES['cuda']})"
            )
        if short not in out:
            out.append(short)
    if not out:
        raise ValueError("no execution provider given; use e.g. --onnx-providers=cpu,cuda")
    return out


def parse_provider_options(items: list[str]) -> dict[str, dict[str, str]]:
    """``["cuda:device_id=1", "cuda:arena_extend_strategy=kSameAsRequested"]`` -> per provider dict."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        provider, sep, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not sep or not eq or not key:
            raise ValueError(f"provider option {item!r} is not PROVIDER:KEY=VALUE (e.g. cuda:device_id=1)")
        (short,) = parse_providers(provider)
        out.setdefault(short, {})[key.strip()] = value.strip()
    return out


class ProviderUnavailable(OnnxParityError):
    """This ONNX Runtime install does not have the provider; the plugin skips (or fails, if required)."""

    def __init__(self, short: str, available: list[str]) -> None:
        self.short = short
        super().__init__(
            f"execution provider {short!r} ({SHORT_NAMES[short]}) is not available in this ONNX Runtime install "
            f"(available: {', '.join(available)}); install {PACKAGES.get(short, 'a build that has it')}"
        )


@dataclasses.dataclass
class Placement:
    """Which providers a session uses and how many graph nodes each one executed."""

    providers: list[str]
    nodes: dict[str, int] = dataclasses.field(default_factory=dict)
    fallback_ops: dict[str, int] = dataclasses.field(default_factory=dict)


def _plugin_devices(short: str) -> list[Any]:
    """Register the provider's plugin library when a package brings one; return its devices."""
    import onnxruntime as ort

    full = SHORT_NAMES[short]
    _built_in_providers(ort)
    if short in PLUGIN_PACKAGES and short not in _registered_plugins:
        module_name, registration = PLUGIN_PACKAGES[short]
        try:
            module = __import__(module_name)
        except ImportError:
            module = None
        if module is not None:
            try:
                ort.register_execution_provider_library(registration, module.get_library_path())
            except Exception as exc:  # registering twice in one process raises; anything else is real
                if "already" not in str(exc).lower():
                    raise OnnxParityError(f"registering the {short} plugin provider failed: {exc}") from exc
            _registered_plugins.add(short)
    if not hasattr(ort, "get_ep_devices"):
        return []
    return [d for d in ort.get_ep_devices() if d.ep_name == full]


def available_providers() -> list[str]:
    """Short names of the providers this process can use (built-in and registered plugins)."""
    import onnxruntime as ort

    names = {FULL_NAMES[p] for p in ort.get_available_providers() if p in FULL_NAMES}
    names |= {short for short in PLUGIN_PACKAGES if _plugin_devices(short)}
    return [s for s in SHORT_NAMES if s in names]


def open_session(
    path: str | os.PathLike[str],
    short: str,
    options: Mapping[str, str] | None = None,
    profile_dir: Path | None = None,
    threads: int | None = None,
) -> tuple[Any, Placement]:
    """An InferenceSession on ``short`` (CPU as the fallback ONNX Runtime always adds).

    With ``profile_dir``, one profiled run is left to the caller: see :func:`placement_from_profile`.
    """
    import onnxruntime as ort

    full = SHORT_NAMES[short]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    if profile_dir is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_dir / f"ort_profile_{short}")
    options = dict(options or {})
    try:
        if short == "cpu":
            session = ort.InferenceSession(os.fspath(path), so, providers=[(full, options)])
        else:
            session = _provider_session(ort, os.fspath(path), so, short, options)
    except ProviderUnavailable:
        raise
    except Exception as exc:
        raise OnnxParityError(f"ONNX Runtime could not create a session on {short}: {exc}") from exc
    used = session.get_providers()
    if full not in used:
        raise OnnxParityError(
            f"ONNX Runtime was asked for {full} but the session runs on {used}: the provider failed to initialise "
            f"and ONNX Runtime fell back silently (check its libraries, e.g. CUDA/cuDNN for cuda, and "
            f"the provider options {options or '{}'})"
        )
    return session, Placement(used)


def _provider_session(ort: Any, path: str, so: Any, short: str, options: dict[str, str]) -> Any:
    """A session on a built-in provider (``providers=[...]``) or a plugin one (``add_provider_for_devices``).

    Plugin providers show up in ``get_available_providers()`` once registered, yet ``providers=[...]`` does
    not run them (the session silently stays on CPU), so a registered plugin always goes through its devices.
    """
    full = SHORT_NAMES[short]
    devices = _plugin_devices(short)
    if devices and (short in _registered_plugins or full not in _built_in_providers(ort)):
        so.add_provider_for_devices(devices, options)
        return ort.InferenceSession(path, so)
    if full in ort.get_available_providers():
        session = ort.InferenceSession(path, so, providers=[(full, options), "CPUExecutionProvider"])
        if full not in session.get_providers() and devices:
            so.add_provider_for_devices(devices, options)  # a plugin registered outside this plugin
            session = ort.InferenceSession(path, so)
        return session
    raise ProviderUnavailable(short, available_providers())


_BUILT_IN: list[str] = []


def _built_in_providers(ort: Any) -> list[str]:
    """The providers compiled into this ONNX Runtime build, as listed before any plugin registration."""
    if not _BUILT_IN:
        _BUILT_IN.extend(ort.get_available_providers())
    return _BUILT_IN


def placement_from_profile(session: Any, short: str) -> Placement:
    """End profiling and count the nodes each provider executed (ONNX Runtime's own record)."""
    profile = session.end_profiling()
    nodes: dict[str, set[str]] = collections.defaultdict(set)
    ops: dict[str, str] = {}
    try:
        events = json.loads(Path(profile).read_text())
    finally:
        Path(profile).unlink(missing_ok=True)
    for event in events:
        args = event.get("args") or {}
        if event.get("cat") == "Node" and "provider" in args:
            node = event["name"].rsplit("_kernel_time", 1)[0]
            nodes[FULL_NAMES.get(args["provider"], args["provider"])].add(node)
            ops[node] = args.get("op_name", "?")
    full = SHORT_NAMES[short]
    fallback: dict[str, int] = collections.Counter(
        ops[n] for provider, names in nodes.items() if provider != short for n in names
    )
    placement = Placement(session.get_providers(), {p: len(n) for p, n in nodes.items()}, dict(fallback))
    if short != "cpu" and nodes and not nodes.get(short):
        raise OnnxParityError(
            f"{full} executed none of the graph's {sum(placement.nodes.values())} nodes: every node fell back to "
            f"CPU ({', '.join(f'{op} x{n}' for op, n in sorted(fallback.items()))}). The result would only test "
            "the CPU provider; check the provider's supported operators and opset."
        )
    return placement
