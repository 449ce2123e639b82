"""The framework-free core: the pass rule, the check order, input recipes and settings resolution."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_onnxparity.compare import compare, default_tolerance, tolerance_for
from pytest_onnxparity.errors import OnnxParityUsageError
from pytest_onnxparity.inputs import build_specs, edge_recipes, materialize, resolve_dynamic_axes
from pytest_onnxparity.settings import Settings, resolve
from pytest_onnxparity.spec import Recipe


def _one(ref, got, atol=None, rtol=None, **kw):
    return compare(["y"], [np.asarray(ref)], ["y"], [np.asarray(got)], atol, rtol, **kw)


class TestPassRule:
    def test_defaults_by_dtype(self) -> None:
        assert default_tolerance(np.float32) == (1e-5, 1e-4)
        assert default_tolerance(np.float16) == (1e-3, 1e-2)
        assert default_tolerance(np.int64) == (0.0, 0.0)
        assert default_tolerance(np.bool_) == (0.0, 0.0)

    def test_atol_scales_with_the_outputs_magnitude(self) -> None:
        ref = np.array([1000.0, -500.0, 0.001], np.float32)
        # 2e-3 absolute on a 1e3-scale output is float32 rounding: atol * 1000 + rtol * |ref| allows it.
        assert _one(ref, ref + np.float32(2e-3)).passed
        unit = np.array([1.0, -0.5, 0.001], np.float32)
        result = _one(unit, unit + np.float32(1e-3))
        assert not result.passed and result.kind == "values"
        assert result.outputs[0].mismatched == 3

    def test_user_tolerance_per_output_and_exact_integers(self) -> None:
        assert tolerance_for("y", np.float32, {"y": 0.5}, None) == (0.5, 1e-4)
        assert tolerance_for("z", np.float32, {"y": 0.5}, None) == (1e-5, 1e-4)
        assert tolerance_for("ids", np.int64, 0.5, 0.5) == (0.0, 0.0)
        assert not _one(np.array([1, 2]), np.array([1, 3]), atol=10).passed

    def test_check_order_count_names_dtype_shape(self) -> None:
        a = np.zeros(3, np.float32)
        assert compare(["y"], [a], ["y", "z"], [a, a], None, None).kind == "count"
        assert compare(["y", "z"], [a, a], ["z", "y"], [a, a], None, None).kind == "names"
        assert compare(["y", "z"], [a, a], ["z", "y"], [a, a], None, None, check_names=False).passed
        assert _one(a, a.astype(np.float64)).kind == "dtype"
        assert _one(a, np.zeros(4, np.float32)).kind == "shape"

    def test_nonfinite_must_sit_in_the_same_places(self) -> None:
        ref = np.array([np.nan, 1.0, np.inf], np.float32)
        assert _one(ref, ref.copy()).passed
        result = _one(ref, np.array([np.nan, np.nan, np.inf], np.float32))
        assert result.kind == "nonfinite" and "1 position(s) disagree, first at index (1,)" in result.problem
        assert result.outputs[0].mismatched == 1
        assert _one(ref, np.array([np.nan, 1.0, -np.inf], np.float32)).kind == "nonfinite"

    def test_worst_elements_are_the_furthest_past_tolerance(self) -> None:
        ref = np.zeros((2, 3), np.float32)
        got = ref.copy()
        got[1, 2], got[0, 1] = 0.5, 0.1
        (out,) = _one(ref, got).outputs
        assert [w.index for w in out.worst] == [(1, 2), (0, 1)]
        assert out.max_abs_diff == pytest.approx(0.5)


def _specs(example, settings=None, hints=()):
    settings = settings or Settings()
    axes = resolve_dynamic_axes(example, settings, {})
    return build_specs(example, axes, settings, hints)


class TestInputs:
    example = {  # noqa: RUF012 (read only)
        "x": np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32),
        "ids": np.array([[3, 7, 9], [1, 2, 3]], np.int64),
        "mask": np.array([[1, 1, 0], [1, 1, 1]], np.int64),
        "pad": np.zeros((2, 3), bool),
    }

    def test_kinds_and_integer_ranges(self) -> None:
        specs = {s.name: s for s in _specs(self.example, hints=(4, 50, 512))}
        assert specs["x"].kind == "float"
        assert (specs["ids"].kind, specs["ids"].low, specs["ids"].high) == ("int", 0, 50)  # smallest table >= 10
        assert specs["mask"].kind == "binary" and specs["pad"].kind == "bool"
        ranged = Settings(input_ranges={"ids": (5, 20)})
        assert {s.name: (s.low, s.high) for s in _specs(self.example, ranged)}["ids"] == (5, 20)

    def test_same_recipe_same_tensors_and_distinct_rows(self) -> None:
        specs = _specs(self.example, hints=(50,))
        recipe = Recipe("t", (("batch", 6),), "normal", 1.0, 42)
        a, b = materialize(recipe, specs, self.example), materialize(recipe, specs, self.example)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
        assert a["x"].shape == (6, 5) and len({row.tobytes() for row in a["x"]}) == 6
        assert a["ids"].min() >= 0 and a["ids"].max() < 50
        assert a["ids"].reshape(-1)[0] == 0 and a["ids"].reshape(-1)[-1] == 49  # both ends of the range

    def test_masks_keep_at_least_one_position_and_include_padding(self) -> None:
        specs = _specs(self.example)
        for pattern in ("normal", "sparse_zeros", "zeros"):
            arrays = materialize(Recipe("t", (("batch", 32),), pattern, 1.0, 3), specs, self.example)
            assert (arrays["mask"].sum(-1) >= 1).all() and (arrays["mask"] == 0).any()
            assert ((~arrays["pad"]).sum(-1) >= 1).all() and arrays["pad"].any()

    def test_edge_cases_reach_batches_zeros_and_large_magnitudes(self) -> None:
        settings = Settings(batch_sizes=(1, 4))
        specs = _specs({"x": self.example["x"]}, settings)
        recipes = edge_recipes(specs, settings)
        assert recipes[0].pattern == "example"
        batches = {r.dims_dict().get("batch") for r in recipes}
        assert {1, 4} <= batches
        assert {"zeros", "ones", "constant", "sparse_zeros"} <= {r.pattern for r in recipes}
        assert max(r.scale for r in recipes) == 1e3 and min(r.scale for r in recipes) == 1e-3

    def test_other_dynamic_axes_get_shorter_and_longer_lengths(self) -> None:
        settings = Settings(dynamic_axes={"x": {0: "batch", 1: "seq"}})
        specs = build_specs({"x": self.example["x"]}, settings.dynamic_axes, settings)
        lengths = {r.dims_dict()["seq"] for r in edge_recipes(specs, settings)}
        assert min(lengths) < 5 < max(lengths)

    def test_conflicting_sizes_of_one_dimension_are_a_usage_error(self) -> None:
        example = {"a": np.zeros((2, 3), np.float32), "b": np.zeros((2, 4), np.float32)}
        settings = Settings(dynamic_axes={"a": {1: "seq"}, "b": {1: "seq"}})
        with pytest.raises(OnnxParityUsageError, match="'seq' is 3 in input 'a' but 4 in 'b'"):
            build_specs(example, settings.dynamic_axes, settings)


class TestSettings:
    def test_call_beats_marker_beats_session(self) -> None:
        s = resolve({"atol": 0.1}, {"atol": 0.2, "rtol": 0.3}, {"atol": 0.4, "rtol": 0.5, "examples": 7})
        assert (s.atol, s.rtol, s.examples) == (0.1, 0.3, 7)

    def test_dynamic_axes_in_torch_onnx_list_form(self) -> None:
        s = resolve({"dynamic_axes": {"x": [0, 1]}}, {}, {})
        assert s.dynamic_axes == {"x": {0: "x_dim0", 1: "x_dim1"}}

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"atol": -1}, "option 'atol': got -1"),
            ({"exporter": "onnxscript"}, "Use one of 'auto', 'dynamo', 'torchscript'"),
            ({"input_ranges": {"ids": (5, 1)}}, "low < high"),
            ({"dynamic_axes": {"x": {"0": "b"}}}, "axis '0' of 'x'"),
            ({"examples": -3}, "Pass 0 (fixed edge cases only) or a positive integer"),
            ({"provider_tolerances": {"tensor_rt": {"atol": 1}}}, "unknown execution provider 'tensor_rt'"),
        ],
    )
    def test_invalid_values_name_the_option_and_the_fix(self, options, message) -> None:
        with pytest.raises(OnnxParityUsageError, match=None) as info:
            resolve(options, {}, {})
        assert message in str(info.value)


def test_benchmark_options_belong_on_the_marker() -> None:
    with pytest.raises(OnnxParityUsageError, match=r"set them on @pytest\.mark\.onnx_parity"):
        resolve({"benchmark_batch_sizes": (1, 2)}, {}, {})
    assert resolve({}, {"benchmark": True, "benchmark_batch_sizes": (2,)}, {}).benchmark_batch_sizes == (2,)


def test_without_dynamic_axes_every_input_keeps_the_example_shape() -> None:
    settings = Settings(dynamic_axes={})
    example = {"x": np.zeros((2, 5), np.float32)}
    specs = build_specs(example, resolve_dynamic_axes(example, settings, {}), settings)
    recipes = edge_recipes(specs, settings)
    assert all(materialize(r, specs, example)["x"].shape == (2, 5) for r in recipes)
    assert not any("batch" in r.label for r in recipes)
