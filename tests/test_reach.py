"""Reach: the default inputs go where conversion bugs hide (wide batches, long sequences), the report says
how far they went, and a shape contract the model or the graph breaks fails loudly."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from tests.conftest import check_planted_file, failure_text
from tests.defects import corrupt_from


def _planted(tmp_path: Path, model: str, example: str, axes: tuple[int, ...], start: int, axis: int) -> Path:
    """Export ``model`` (a tests.models class) with dynamic ``axes``; plant ``corrupt_from(start, axis)``."""
    import torch

    from tests import models

    healthy = models.export_file(
        getattr(models, model)().eval(),
        eval(example, {"torch": torch}),
        tmp_path / "healthy.onnx",
        "ids" if model == "PositionalTagger" else "x",
        axes,
    )
    planted = tmp_path / "planted.onnx"
    edited = corrupt_from(onnx.load(healthy), start=start, axis=axis)
    onnx.checker.check_model(edited)
    onnx.save(edited, str(planted))
    return planted


def test_rows_past_the_first_few_of_a_batch_are_checked(pytester: pytest.Pytester, plant) -> None:
    path = plant("mlp", lambda m: corrupt_from(m, start=12, axis=0))
    text = check_planted_file(pytester, "torch_models", "mlp", path)
    assert "values: output 'output'" in text and "batch=17" in text, text


SEQUENCE_CHECK = """
import torch
from tests.models import {model}

def test_sequence(onnx_parity):
    onnx_parity({model}().eval(), {example}, onnx_model=r"{path}",
                dynamic_axes={{"{name}": {{0: "batch", 1: "seq"}}}})
"""


@pytest.mark.parametrize(
    ("model", "example", "name", "start", "beyond"),
    [
        # a 100-position table, an example of length 8, a defect from position 40: the walk reaches the table's end
        ("PositionalTagger", "torch.randint(0, 50, (2, 8))", "ids", 40, 40),
        # no table: walked to 512, so a defect from position 100 is reached
        ("FrameScorer", "torch.randn(2, 12, 4)", "frames", 100, 100),
    ],
)
def test_a_defect_deep_in_a_sequence_is_reached_by_default(
    pytester: pytest.Pytester, tmp_path, model: str, example: str, name: str, start: int, beyond: int
) -> None:
    path = _planted(tmp_path, model, example, (0, 1), start, axis=1)
    pytester.makepyfile(SEQUENCE_CHECK.format(model=model, example=example, path=path, name=name))
    reprec = pytester.inline_run("-p", "no:cacheprovider", "--onnx-report=r.json")
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    assert "values: output 'output'" in text, text
    (check,) = json.loads((pytester.path / "r.json").read_text())["checks"]
    assert check["failure"]["recipe"]["dims"]["seq"] > beyond


def test_a_model_that_only_takes_a_batch_of_one_fails_naming_the_axis(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import torch
        from tests.models import BatchOfOne

        def test_batch_of_one(onnx_parity):
            onnx_parity(BatchOfOne().eval(), torch.randn(1, 8))
        """
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(failed=1)
    (text,) = failure_text(reprec).values()
    assert "shape-contract: axis 'batch' is declared dynamic but the model itself rejects every size except" in text
    assert "dynamic_axes={}" in text, text


def test_the_reach_is_in_the_json_report_and_the_time_budget_shows_in_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, torch
        from tests.models import PositionalTagger

        AXES = {"ids": {0: "batch", 1: "seq"}}

        def test_full(onnx_parity):
            assert onnx_parity(PositionalTagger().eval(), torch.randint(0, 50, (2, 8)), dynamic_axes=AXES).passed

        def test_budget(onnx_parity):
            onnx_parity(PositionalTagger().eval(), torch.randint(0, 50, (2, 8)), dynamic_axes=AXES, time_budget=1e-6)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--onnx-report=r.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_budget*batch<=*skipped)*"])
    checks = {c["nodeid"].split("::")[1]: c for c in json.loads((pytester.path / "r.json").read_text())["checks"]}
    full = checks["test_full[cpu]"]["reach"]["seq"]
    assert full["largest"] == 100 and 100 in full["planned"] and {1, 8, 67, 100} <= set(full["checked"])
    skipped = checks["test_budget[cpu]"]["reach"]["seq"]["skipped"]
    assert skipped and all("time budget" in why for why in skipped.values())


def test_an_empty_batch_is_opt_in_and_a_crash_fails_only_that_check(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import torch
        from tests.models import FrameScorer, Tagger

        def test_lstm(onnx_parity):
            onnx_parity(Tagger().eval(), torch.randint(0, 20, (2, 5)), edge_cases={"empty_batch": True}, examples=0)

        def test_frames(onnx_parity):
            report = onnx_parity(FrameScorer().eval(), torch.randn(2, 6, 4), edge_cases={"empty_batch": True})
            assert 0 in report.reach["batch"]["checked"]

        def test_not_by_default(onnx_parity):
            assert 0 not in onnx_parity(FrameScorer().eval(), torch.randn(2, 6, 4)).reach["batch"]["checked"]
        """
    )
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    reprec.assertoutcome(passed=2, failed=1)
    (text,) = failure_text(reprec).values()
    assert "ONNX Runtime crashed with SIGABRT" in text and "only this check failed" in text, text
