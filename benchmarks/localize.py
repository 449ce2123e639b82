"""What localizing a failure costs: a failing check with ``localize=True`` vs ``localize=False``.

Each planted defect (in a sample model's own export) is checked both ways, interleaved, in one process after a
warm-up. The extra time is set against one more check: a full check of the healthy model, its export included
(the target: localizing costs at most about that).

    python benchmarks/localize.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.defects import DEFECTS  # noqa: E402  (the plugin's own planted defects)

CASES = ("weight_off_1e-3", "layernorm_epsilon", "bert_attention_mask_ignored")


def main() -> None:
    import onnx

    from pytest_onnxparity import check
    from sample_models.torch_models import build

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="onnxparity_localize_"))
    header = f"{'defect':<28} {'model':<8} {'fails in':>9} {'+ localize':>11} {'one check':>10} {'extra/check':>12}"
    print(header + "  first divergence")
    for name in CASES:
        model_name, plant, _, _ = DEFECTS[name]
        model, example, options = build(model_name)
        start = time.perf_counter()
        healthy = check(model, example, workdir=work / name, **options)  # one full check: the yardstick
        one_check = time.perf_counter() - start
        planted = work / f"{name}.onnx"
        onnx.save(plant(onnx.load(healthy.onnx_path)), str(planted))
        times: dict[bool, list[float]] = {True: [], False: []}
        line = ""
        for _ in range(args.repeat + 1):  # the first round warms up (session creation, imports)
            for localize in (False, True):
                start = time.perf_counter()
                report = check(model, example, onnx_model=str(planted), localize=localize, **options)
                times[localize].append(time.perf_counter() - start)
                line = report.first_divergence["line"] if report.first_divergence else line
        without, located = statistics.median(times[False][1:]), statistics.median(times[True][1:])
        extra = located - without
        figures = f"{without:>8.2f}s {located:>10.2f}s {one_check:>9.2f}s {extra / one_check:>11.2f}x"
        print(f"{name:<28} {model_name:<8} {figures}  {line[:70]}")


if __name__ == "__main__":
    main()
