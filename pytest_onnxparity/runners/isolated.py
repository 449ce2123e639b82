"""ONNX Runtime in a child process, for inputs that may crash it rather than raise.

Some kernels abort the whole process on an empty batch (ONNX Runtime's LSTM raises SIGABRT on batch 0),
so such inputs run here: a crash fails that one check, never the pytest session.

    python -m pytest_onnxparity.runners.isolated MODEL PROVIDER OPTIONS_JSON INPUTS.npz OUTPUTS.npz
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OnnxParityError
from ..providers import registry

if TYPE_CHECKING:
    import numpy as np

    from .onnxruntime import OrtRunner

#: Seconds a child run may take before it counts as hung.
TIMEOUT = 120


class Crashed(OnnxParityError):
    """ONNX Runtime died (a signal, an abort) or hung on the input instead of raising."""


def hosted_here(provider: str) -> bool:
    """A provider a hook added exists in this process only: it cannot run in a child."""
    return registry.definition(provider).create_session is not None


def infer_runner(runner: OrtRunner, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``runner.infer`` in a child process (an input that may crash ONNX Runtime: an empty batch)."""
    if hosted_here(runner.provider):
        return runner.infer(feed)
    return infer(runner.path, runner.provider, runner.options, {n: feed[k] for n, k in runner.feed_names.items()})


def infer(
    path: str, provider: str, options: Mapping[str, str], feed: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run ``path`` on ``feed`` in a child process; raises :class:`Crashed` when the child dies."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="onnxparity_isolated_") as tmp:
        inputs, outputs = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        arrays: dict[str, Any] = {name: np.asarray(value) for name, value in feed.items()}
        np.savez(inputs, **arrays)
        command = [sys.executable, "-m", __name__, path, provider, json.dumps(dict(options)), str(inputs), str(outputs)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise Crashed(f"ONNX Runtime hung for more than {TIMEOUT} s on this input (in a child process)") from None
        if done.returncode < 0:
            name = signal.Signals(-done.returncode).name
            said = done.stderr.strip()[-500:]
            raise Crashed(
                f"ONNX Runtime crashed with {name} on this input (in a child process, so only this check "
                f"failed){': ' + said if said else ''}"
            )
        if done.returncode != 0:
            raise Crashed(f"ONNX Runtime failed on this input: {done.stderr.strip()[-800:]}")
        with np.load(outputs, allow_pickle=False) as loaded:
            return {name: loaded[name] for name in json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv: list[str]) -> int:
    import numpy as np

    from .onnxruntime import OrtRunner

    path, provider, options, inputs, outputs = argv
    runner = OrtRunner(path, provider, json.loads(options))
    with np.load(inputs, allow_pickle=False) as loaded:
        result: dict[str, Any] = runner.infer({name: loaded[name] for name in loaded.files})
    np.savez(outputs, **result)
    print(json.dumps(list(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
