"""The framework-free core: the pass rule, the check order, input recipes and option resolution."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_onnxparity.errors import OnnxParityUsageError
from pytest_onnxparity.inputs.plan import axis_limits, axis_plan
from pytest_onnxparity.inputs.recipes import edge_recipes, materialize
from pytest_onnxparity.inputs.spec import Recipe, build_specs, resolve_dynamic_axes
from pytest_onnxparity.judge.compare import compare
from pytest_onnxparity.judge.tolerance import TolerancePolicy
from pytest_onnxparity.options.settings import CheckOptions, resolve


def _one(ref, got, atol=None, rtol=None, **kw):
    return compare({"y": np.asarray(ref)}, {"y": np.asarray(got)}, TolerancePolicy(atol, rtol), **kw)


class TestPassRule:
    def test_defaults_by_dtype(self) -> None:
        policy = TolerancePolicy()
        assert policy.for_output("y", "float32") == (1e-6, 1e-5)
        assert policy.for_output("y", "float16") == (1e-3, 1e-2)
        assert policy.for_output("y", "bfloat16") == (1e-2, 2e-2)
        assert policy.for_output("y", "int64") == (0.0, 0.0)
        assert policy.for_output("y", "bool") == (0.0, 0.0)

    def test_atol_scales_with_the_outputs_real_magnitude(self) -> None:
        ref = np.array([1000.0, -500.0, 0.001], np.float32)
        # 5e-4 absolute on a 1e3-scale output is a few float32 ulps there: atol * 1000 + rtol * |ref| allows it.
        assert _one(ref, ref + np.float32(5e-4)).passed
        unit = np.array([1.0, -0.5, 0.001], np.float32)
        result = _one(unit, unit + np.float32(1e-4))
        assert not result.passed and result.kind == "values"
        assert result.outputs[0].mismatched == 3
        # tiny outputs are compared at their own scale, not waved through by an absolute floor
        tiny = np.array([1e-10, -3e-10, 2e-10], np.float32)
        assert not _one(tiny, tiny * np.float32(1.01)).passed
        assert _one(tiny, tiny * np.float32(1 + 1e-6)).passed

    def test_the_references_own_noise_widens_the_allowance_where_it_is(self) -> None:
        from pytest_onnxparity.judge.compare import OutputContext

        ref = np.linspace(1.0, 2.0, 20).astype(np.float32)
        got = ref.copy()
        got[:2] += np.float32(5e-4)
        spike = np.zeros(20)
        spike[0] = 1e-3  # the reference itself is unstable at one element only (a discontinuity)
        verdict = compare({"y": ref}, {"y": got}, TolerancePolicy(), context={"y": OutputContext(noise=spike)})
        (figures,) = verdict.outputs
        assert figures.mismatched == 1 and verdict.worst[0]["index"] == (1,)  # the spike widened element 0 only
        # a quiet element is credited with the output's typical noise (it may have rounded luckily)
        typical = np.full(20, 1e-4)
        typical[1] = 0.0
        assert compare({"y": ref}, {"y": got}, TolerancePolicy(), context={"y": OutputContext(noise=typical)}).passed
        assert not compare(
            {"y": ref}, {"y": got}, TolerancePolicy(noise_factor=0.0), context={"y": OutputContext(noise=typical)}
        ).passed

    def test_padded_positions_are_excluded_and_counted(self) -> None:
        from pytest_onnxparity.judge.compare import OutputContext

        ref = np.zeros((2, 3, 4), np.float32)
        got = ref.copy()
        got[1, 2] = 5.0  # garbage at a padded position
        pad = np.array([[False, False, False], [False, False, True]])[..., None]
        verdict = compare({"h": ref}, {"h": got}, TolerancePolicy(), context={"h": OutputContext(exclude=pad)})
        assert verdict.passed and verdict.outputs[0].excluded == 4 and verdict.outputs[0].total == 20
        assert not compare({"h": ref}, {"h": got}, TolerancePolicy()).passed

    def test_index_outputs_accept_ties(self) -> None:
        from pytest_onnxparity.judge.compare import OutputContext

        scores = np.array([[0.5, 0.9, 0.9], [0.1, 0.2, 0.3]], np.float32)
        ref, tie, wrong = np.array([1, 2]), np.array([2, 2]), np.array([0, 2])
        context = {"i": OutputContext(index_data=(scores, -1))}
        verdict = compare({"i": ref}, {"i": tie}, TolerancePolicy(), context=context)
        assert verdict.passed and verdict.outputs[0].ties == 1
        assert not compare({"i": ref}, {"i": wrong}, TolerancePolicy(), context=context).passed

    def test_user_tolerance_per_output_and_exact_integers(self) -> None:
        assert TolerancePolicy({"y": 0.5}).for_output("y", "float32") == (0.5, 1e-5)
        assert TolerancePolicy({"y": 0.5}).for_output("z", "float32") == (1e-6, 1e-5)
        assert TolerancePolicy(0.5, 0.5).for_output("ids", "int64") == (0.0, 0.0)
        assert not _one(np.array([1, 2]), np.array([1, 3]), atol=10).passed

    def test_check_order_count_names_dtype_shape(self) -> None:
        a = np.zeros(3, np.float32)
        policy = TolerancePolicy()
        assert compare({"y": a}, {"y": a, "z": a}, policy).kind == "count"
        assert compare({"y": a, "z": a}, {"z": a, "y": a}, policy).kind == "names"
        assert compare({"y": a, "z": a}, {"z": a, "y": a}, policy, check_names=False).passed
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
        verdict = _one(ref, got)
        assert [w["index"] for w in verdict.worst] == [(1, 2), (0, 1)]
        assert verdict.outputs[0].max_abs_diff == pytest.approx(0.5)

    def test_figures_merge_over_input_sets(self) -> None:
        first = _one(np.zeros(4, np.float32), np.full(4, 1e-6, np.float32)).outputs[0]
        second = _one(np.zeros(2, np.float32), np.full(2, 3e-6, np.float32)).outputs[0]
        first.merge(second)
        assert first.total == 6 and first.max_abs_diff == pytest.approx(3e-6)
        assert first.mean_abs_diff == pytest.approx((4e-6 + 6e-6) / 6)


def _specs(example, options=None, hints=()):
    options = options or CheckOptions()
    axes = resolve_dynamic_axes(example, options, {})
    return build_specs(example, axes, options, hints)


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
        ranged = CheckOptions(input_ranges={"ids": (5, 20)})
        assert {s.name: (s.low, s.high) for s in _specs(self.example, ranged)}["ids"] == (5, 20)

    def test_same_recipe_same_tensors_and_distinct_rows(self) -> None:
        specs = _specs(self.example, hints=(50,))
        recipe = Recipe("t", (("batch", 6),), "normal", 1.0, 42)
        a, b = materialize(recipe, specs, self.example), materialize(recipe, specs, self.example)
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
        assert a["x"].shape == (6, 5) and len({row.tobytes() for row in a["x"]}) == 6
        assert a["ids"].min() >= 0 and a["ids"].max() < 50
        real = a["mask"] == 1
        assert a["ids"][real].min() == 0 and a["ids"][real].max() == 49  # both ends of the range, on real tokens
        assert (a["ids"][~real] == 0).all(), "padded positions hold the pad id (the range's low end here)"

    def test_masks_pad_like_a_tokenizer_and_keep_a_real_token(self) -> None:
        specs = _specs(self.example)
        for pattern, holes in (("normal", True), ("uniform", True), ("sparse_zeros", False), ("zeros", True)):
            recipe = Recipe("t", (("batch", 32),), pattern, 1.0, 3)
            arrays = materialize(recipe, specs, self.example, mask_holes=holes)
            keep = arrays["mask"].astype(bool)
            assert (keep.sum(-1) >= 1).all() and (~keep).any()
            assert ((~arrays["pad"]).sum(-1) >= 1).all() and arrays["pad"].any()
            # right or left padding: the kept positions are one run, no holes
            runs = [np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0])) for row in keep]
            assert all(len(r) == 2 for r in runs)

    def test_masks_have_holes_by_default(self) -> None:
        specs = _specs(self.example)
        keep = materialize(Recipe("t", (("batch", 32),), "sparse_zeros", 1.0, 3), specs, self.example)["mask"]
        runs = [np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0])) for row in keep]
        assert any(len(r) > 2 for r in runs), "kept positions scattered: holes between real tokens"
        assert (keep.sum(-1) >= 1).all()

    def test_non_finite_values_sit_in_some_rows_of_every_float_input(self) -> None:
        specs = _specs({"x": self.example["x"]})
        x = materialize(Recipe("t", (("batch", 17),), "nonfinite", 1.0, 8), specs, self.example)["x"]
        assert np.isnan(x).any(axis=1).sum() >= 4 and np.isposinf(x).any() and np.isneginf(x).any()
        assert np.isfinite(x).all(axis=1).sum() >= 4, "some rows stay finite"
        ranged = _specs({"x": self.example["x"]}, CheckOptions(input_ranges={"x": (-1.0, 1.0)}))
        inside = materialize(Recipe("t", (("batch", 17),), "nonfinite", 1.0, 8), ranged, self.example)["x"]
        assert np.isfinite(inside).all(), "a declared range holds no NaN or Inf"

    def test_token_ids_are_written_as_a_tokenizer_writes_them(self) -> None:
        example = {"ids": self.example["ids"], "mask": self.example["mask"]}
        specs = _specs(example, hints=(50,))
        arrays = materialize(
            Recipe("t", (("batch", 17),), "normal", 1.0, 5), specs, example, special={"pad": 1, "bos": 2, "eos": 3}
        )
        ids, real = arrays["ids"], arrays["mask"] == 1
        assert (ids[~real] == 1).all(), "the pad id at padded positions"
        for row, keep in zip(ids, real):
            kept = row[keep]
            assert kept[-1] == 3 and (len(kept) == 1 or kept[0] == 2), "bos first, eos last among real tokens"
        assert ids[real].min() == 0 and ids[real].max() == 49, "the range's ends still reach real tokens"
        out_of_range = materialize(Recipe("t", (("batch", 3),), "normal", 1.0, 5), specs, example, special={"eos": 99})
        assert out_of_range["ids"].max() < 50, "a special id outside the model's id range is not written"

    def test_edge_cases_reach_a_wide_batch_zeros_and_large_magnitudes(self) -> None:
        options = CheckOptions()
        specs = _specs({"x": self.example["x"]}, options)
        recipes = edge_recipes(specs, options, axis_plan(specs, options, {}))
        assert recipes[0].pattern == "example"
        batches = {r.dims_dict().get("batch") for r in recipes}
        assert {1, 3} <= batches and max(batches) >= 17
        assert {"zeros", "ones", "constant", "sparse_zeros"} <= {r.pattern for r in recipes}
        assert max(r.scale for r in recipes) == 1e3 and min(r.scale for r in recipes) == 1e-3

    def test_a_sequence_axis_is_walked_to_the_models_limit(self) -> None:
        options = CheckOptions(dynamic_axes={"ids": {0: "batch", 1: "seq"}})
        example = {"ids": np.zeros((2, 8), np.int64) + 3}
        specs = build_specs(example, options.dynamic_axes or {}, options, (100,))
        with_table = axis_plan(specs, options, axis_limits(specs, sequence_limit=100))["seq"]
        assert min(with_table) == 1 and max(with_table) == 100 and 8 in with_table
        assert any(40 < n < 100 for n in with_table)
        unbounded = axis_plan(specs, options, axis_limits(specs, sequence_limit=None))["seq"]
        assert max(unbounded) == 512 and any(100 < n < 512 for n in unbounded)
        chosen = CheckOptions(dynamic_axes=options.dynamic_axes, axis_sizes={"seq": (1, 7, 64)})
        assert axis_plan(specs, chosen, axis_limits(specs, 100))["seq"] == (1, 7, 64)

    def test_edge_cases_switch_off_by_name(self) -> None:
        options = resolve({"edge_cases": {"large": False, "zeros": False}}, {}, {})
        specs = _specs({"x": self.example["x"]}, options)
        labels = [r.label for r in edge_recipes(specs, options, axis_plan(specs, options, {}))]
        assert "edge: large magnitude (x1e3)" not in labels and "edge: exact zeros" not in labels
        assert "edge: ones" in labels and "edge: sparse exact zeros" in labels

    def test_conflicting_sizes_of_one_dimension_are_a_usage_error(self) -> None:
        example = {"a": np.zeros((2, 3), np.float32), "b": np.zeros((2, 4), np.float32)}
        options = CheckOptions(dynamic_axes={"a": {1: "seq"}, "b": {1: "seq"}})
        with pytest.raises(OnnxParityUsageError, match="'seq' is 3 in input 'a' but 4 in 'b'"):
            build_specs(example, options.dynamic_axes or {}, options)

    def test_a_scalar_input_is_generated(self) -> None:
        example = {"t": np.array(0.5, np.float32)}
        specs = _specs(example)
        for pattern in ("normal", "sparse_zeros", "uniform"):
            value = materialize(Recipe("t", (), pattern, 1.0, 1), specs, example)["t"]
            assert value.shape == () and value.dtype == np.float32


class TestOptions:
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
            ({"atol": float("inf")}, "option 'atol': got inf"),
            ({"exporter": "onnxscript"}, "Use one of 'auto', 'dynamo', 'torchscript'"),
            ({"input_ranges": {"ids": (5, 1)}}, "low < high"),
            ({"dynamic_axes": {"x": {"0": "b"}}}, "Axis '0' of 'x'"),
            ({"examples": -3}, "Pass 0 (fixed edge cases only)"),
            ({"examples": 10**6}, "more is a CI hang"),
            ({"provider_tolerances": {"tensor_rt": {"atol": 1}}}, "unknown execution provider 'tensor_rt'"),
            ({"provider_tolerances": {"cuda ": {"atol": 1}}}, "unknown execution provider 'cuda '"),
            ({"output_names": ["a", "a"]}, "repeats a name"),
            ({"edge_cases": {"huge": False}}, "unknown edge case(s) ['huge']"),
            ({"edge_cases": {"nonfinite": "yes"}}, "'nonfinite' is 'yes'. Pass True (a divergence only NaN/Inf"),
            ({"axis_sizes": {"seq": (0, 4)}}, "axis_sizes['seq']\": got 0"),
            ({"time_budget": 0}, "Pass a positive, finite number of seconds"),
        ],
    )
    def test_invalid_values_name_the_option_and_the_fix(self, options, message) -> None:
        with pytest.raises(OnnxParityUsageError) as info:
            resolve(options, {}, {})
        assert message in str(info.value)


def test_benchmark_options_belong_on_the_marker() -> None:
    with pytest.raises(OnnxParityUsageError, match=r"set them on @pytest\.mark\.onnx_parity"):
        resolve({"benchmark_batch_sizes": (1, 2)}, {}, {})
    assert resolve({}, {"benchmark": True, "benchmark_batch_sizes": (2,)}, {}).benchmark_batch_sizes == (2,)


def test_without_dynamic_axes_every_input_keeps_the_example_shape() -> None:
    options = CheckOptions(dynamic_axes={})
    example = {"x": np.zeros((2, 5), np.float32)}
    specs = build_specs(example, resolve_dynamic_axes(example, options, {}), options)
    recipes = edge_recipes(specs, options, axis_plan(specs, options, {}))
    assert all(materialize(r, specs, example)["x"].shape == (2, 5) for r in recipes)
    assert not any("batch" in r.label for r in recipes)
