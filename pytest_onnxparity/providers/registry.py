"""Execution providers: names, definitions, why one is missing, and the precision each one runs at.

The name tables are plain data so the plugin validates ``--onnx-providers`` without importing
onnxruntime. Every provider, built-in or added by a conftest (``pytest_onnxparity_providers``), is a
:class:`ProviderDefinition`; sessions are opened by ``runners/onnxruntime.py``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import OnnxParityError

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
    "cpu": "onnxruntime",
    "cuda": "onnxruntime-gpu (with the CUDA and cuDNN libraries)",
    "tensorrt": "onnxruntime-gpu with the TensorRT libraries",
    "openvino": "onnxruntime-openvino (it replaces onnxruntime), or onnxruntime-ep-openvino beside onnxruntime >= 1.23",
    "rocm": "onnxruntime-rocm",
    "dml": "onnxruntime-directml (Windows)",
    "coreml": "onnxruntime on macOS",
}


@dataclasses.dataclass(frozen=True)
class Unavailable:
    """Why a provider cannot run here: ``not-installed``, ``no-device`` or ``load-failure``."""

    kind: str
    message: str


@dataclasses.dataclass(frozen=True)
class ProviderDefinition:
    """An execution provider parity checks can run on.

    Built-in providers leave the callables unset and go through ONNX Runtime by name. A conftest can add
    its own (a stand-in, a custom build) through the ``pytest_onnxparity_providers`` hook.
    """

    name: str
    ort_name: str
    package: str = "a build of ONNX Runtime that has it"
    #: ``() -> Unavailable | None``: None when the provider can run here.
    availability: Callable[[], Unavailable | None] | None = None
    #: ``(path, provider_options, SessionOptions) -> InferenceSession``.
    create_session: Callable[[str, Mapping[str, str], Any], Any] | None = None
    #: ``(provider_options) -> Precision`` (``pytest_onnxparity.runners.precision.Precision``).
    precision: Callable[[Mapping[str, str]], Any] | None = None
    #: ``(node_name, op_type, ort_provider) -> short provider name``: who ran a profiled node.
    attribute_node: Callable[[str, str, str], str] | None = None


def parse_providers(text: str, strict_names: bool = False) -> list[str]:
    """``"cpu,cuda"`` or full names -> short names; raises ValueError naming the valid ones.

    ``strict_names`` refuses surrounding whitespace (a dict key ``"cuda "`` is a typo, not a list).
    """
    out = []
    for raw in text.split(","):
        name = raw if strict_names else raw.strip()
        if not name and not strict_names:
            continue
        short = name.lower() if name.lower() in known() else FULL_NAMES.get(name)
        if short is None:
            raise ValueError(
                f"unknown execution provider {name!r}; valid: {', '.join(known())} "
                f"(or ONNX Runtime's full names such as {SHORT_NAMES['cuda']})"
            )
        if short not in out:
            out.append(short)
    if not out:
        raise ValueError("no execution provider given; use e.g. --onnx-providers=cpu,cuda")
    return out


def parse_provider_options(items: list[str]) -> dict[str, dict[str, str]]:
    """``["cuda:device_id=1", "cuda:use_tf32=0"]`` -> per provider dict."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        provider, sep, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not sep or not eq or not key.strip():
            raise ValueError(f"provider option {item!r} is not PROVIDER:KEY=VALUE (e.g. cuda:device_id=1)")
        (short,) = parse_providers(provider)
        if short == "cpu":
            raise ValueError(
                f"provider option {item!r}: the CPU provider takes no provider options in ONNX Runtime; "
                "session options (threads, optimization level) are set by the plugin"
            )
        out.setdefault(short, {})[key.strip()] = value.strip()
    return out


_ADDED: dict[str, ProviderDefinition] = {}


def register(definitions: list[ProviderDefinition]) -> dict[str, ProviderDefinition]:
    """Make ``definitions`` the added providers (``pytest_onnxparity_providers``); returns the previous ones."""
    previous = dict(_ADDED)
    for definition in definitions:
        if definition.name in SHORT_NAMES:
            raise ValueError(f"provider {definition.name!r} is built in; give the added provider another name")
    _ADDED.clear()
    _ADDED.update({d.name: d for d in definitions})
    return previous


def known() -> list[str]:
    return [*SHORT_NAMES, *_ADDED]


def definition(short: str) -> ProviderDefinition:
    if short in _ADDED:
        return _ADDED[short]
    return ProviderDefinition(short, SHORT_NAMES[short], PACKAGES.get(short, "a build that has it"))


#: Plugin execution providers shipped as Python packages: short name -> (module, registration name).
PLUGIN_PACKAGES = {"openvino": ("onnxruntime_ep_openvino", "OpenVINO")}
#: Plugin libraries this process registered: None when it worked, else the loader's error.
_registered: dict[str, str | None] = {}


def plugin_package(short: str) -> Any:
    """The plugin EP's Python package when installed (and ONNX Runtime can take plugin EPs), else None."""
    import importlib
    import importlib.util

    import onnxruntime as ort

    if short not in PLUGIN_PACKAGES or not hasattr(ort, "register_execution_provider_library"):
        return None
    if importlib.util.find_spec(PLUGIN_PACKAGES[short][0]) is None:
        return None
    return importlib.import_module(PLUGIN_PACKAGES[short][0])


def plugin_devices(short: str) -> list[Any]:
    """Devices a plugin EP offers (registering its package's library once); raises if the library fails to load.

    Compiled-in providers (the classic onnxruntime-openvino wheel, onnxruntime-gpu) list no EP devices.
    """
    import onnxruntime as ort

    module = plugin_package(short)
    if module is not None and short not in _registered:
        try:
            ort.register_execution_provider_library(PLUGIN_PACKAGES[short][1], module.get_library_path())
            _registered[short] = None
        except Exception as exc:  # registering twice in one process raises; anything else is a load failure
            _registered[short] = None if "already" in str(exc).lower() else str(exc)
    if _registered.get(short):
        raise OnnxParityError(str(_registered[short]))
    if not hasattr(ort, "get_ep_devices"):
        return []
    return [d for d in ort.get_ep_devices() if d.ep_name == SHORT_NAMES.get(short)]


def unavailable(short: str) -> Unavailable | None:
    """Why ``short`` cannot run in this process, or None when a session may be opened."""
    import onnxruntime as ort

    defined = definition(short)
    if defined.availability is not None:
        return defined.availability()
    module = plugin_package(short)
    version = f"{module.__name__} {getattr(module, '__version__', '')}".strip() if module is not None else ""
    try:
        if plugin_devices(short):
            return None
    except OnnxParityError as exc:
        return Unavailable("load-failure", f"{version} is installed but its library failed to load: {exc}")
    if short in _registered:
        return Unavailable(
            "no-device",
            f"{version} is installed but offers no {short} device on this machine (it looks for Intel CPUs, GPUs "
            f"and NPUs; this CPU is {cpu_name()!r}); on such a machine use the classic wheel: "
            "pip install onnxruntime-openvino",
        )
    if defined.ort_name in ort.get_available_providers():
        return None
    return Unavailable(
        "not-installed",
        f"execution provider {short!r} ({defined.ort_name}) is not installed in this environment "
        f"(this ONNX Runtime has {', '.join(ort.get_available_providers())}); pip install {defined.package}",
    )


#: What ONNX Runtime logs when a provider's libraries or device are missing (it then falls back to CPU).
_LOAD_FAILURE = re.compile(r"(Failed to load library|cannot open shared object|error while loading shared lib)[^\n]*")
_NO_DEVICE = re.compile(
    r"(no CUDA-capable device|CUDA driver version is insufficient|no device found|No device"
    r"|hipErrorNoDevice|Cannot find .* device)[^\n]*",
    re.IGNORECASE,
)


def diagnose_fallback(short: str, log: str) -> Unavailable | None:
    """Read ONNX Runtime's log of a session that came up without ``short``: a missing library or device?"""
    for kind, pattern in (("load-failure", _LOAD_FAILURE), ("no-device", _NO_DEVICE)):
        found = pattern.search(log)
        if found:
            what = "its libraries failed to load" if kind == "load-failure" else "it found no device"
            return Unavailable(kind, f"execution provider {short!r} is installed but {what}: {found.group(0).strip()}")
    return None


def cpu_name() -> str:
    """The CPU's model name, for messages about devices."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
