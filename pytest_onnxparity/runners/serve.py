"""The ONNX Runtime worker process's side (``worker.py`` is this process's): runners opened, run and released by id.

python -m pytest_onnxparity.runners.serve REQUEST_FD REPLY_FD
"""

from __future__ import annotations

import signal
import sys
from typing import Any


def _serve(requests: Any, replies: Any) -> None:
    """The child's loop: open and run runners by id (closing those the parent dropped) until the parent goes."""
    import faulthandler

    from .onnxruntime import OrtRunner, ProviderUnavailable

    faulthandler.register(signal.SIGUSR1, all_threads=True)
    runners: dict[int, OrtRunner] = {}
    while True:
        try:
            request = requests.recv()
        except EOFError:
            return
        dropped, verb, key, *rest = request
        try:
            for gone in dropped:
                runners.pop(gone).close()
            if verb == "open":
                path, provider, options, kwargs = rest
                runner = runners[key] = OrtRunner(path, provider, options, **kwargs)
                value: Any = {
                    "input_names": runner.input_names,
                    "output_names": runner.output_names,
                    "feed_names": runner.feed_names,
                    "placement": runner.placement,
                    "report": runner.report_fields(),
                    "session_options": runner.session_options(),
                }
            elif verb == "infer":
                runner = runners[key]
                before = runner.placement
                outputs = runner.infer(rest[0])  # the first run of a profiled runner learns a new placement
                changed = runner.placement is not before
                facts = {"placement": runner.placement, "report": runner.report_fields()} if changed else None
                value = (outputs, facts)
            replies.send(("ok", value))
        except Exception as exc:
            unavailable = exc.kind if isinstance(exc, ProviderUnavailable) else None
            replies.send(("error", (type(exc).__name__, str(exc), unavailable)))


def main(argv: list[str]) -> int:
    from multiprocessing.connection import Connection

    requests, replies = int(argv[0]), int(argv[1])
    _serve(Connection(requests, writable=False), Connection(replies, readable=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
