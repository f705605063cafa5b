"""End to end: the bundled digits CNN and every ONNX builder, compiled and checked against the NumPy reference."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.datasets import calibration_batches, load_digits_split
from tvm_mp.errors import CalibrationError, Error, InputShapeError, PlanError
from tvm_mp.models import digits_cnn_path
from tvm_mp.models.builders import BUILDERS


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def digits_mod():
    return tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})


@pytest.fixture(scope="module")
def calib():
    return calibration_batches(8, 32)


def top1(model, digits) -> float:
    return float((model.run(digits.x_test).argmax(axis=1) == digits.y_test).mean())


@pytest.fixture(scope="module")
def fp32_top1(digits_mod, digits):
    from tvm_mp import _tvm

    ex = _tvm.build(digits_mod)
    vm = _tvm.vm(ex)
    preds = [_tvm.run_relax(vm, [x[None]]).argmax() for x in digits.x_test]
    return float((np.array(preds) == digits.y_test).mean())


@pytest.mark.slow
@pytest.mark.parametrize("bits", [(8, 8), (4, 4), (2, 2)])
def test_digits_uniform_plans(digits_mod, digits, calib, fp32_top1, bits, record_property):
    cm = tvm_mp.compile(digits_mod, plan=PrecisionPlan.uniform(digits_mod, Precision(*bits)), calibration=calib,
                        accuracy_fn=lambda m: top1(m, digits))
    record_property(f"top1_w{bits[0]}a{bits[1]}", cm.report.accuracy)
    print(f"digits w{bits[0]}a{bits[1]}: top-1 {cm.report.accuracy:.4f} (fp32 {fp32_top1:.4f})")
    # the compiled model equals the NumPy reference of the same plan, exactly, on the whole test split
    np.testing.assert_array_equal(cm.run(digits.x_test), cm.reference(digits.x_test))
    if bits == (8, 8):
        assert cm.report.accuracy >= fp32_top1 - 0.005
    else:
        assert 0.0 <= cm.report.accuracy <= 1.0
    rows = {r.name: r for r in cm.report.layers}
    assert set(rows) == {"conv2d_0", "conv2d_1", "conv2d_2", "dense_0"}
    if bits == (2, 2):
        # a 2-bit layer stores about 1/16 of its fp32 weight bytes (bit-planes padded to 32-bit words)
        assert rows["conv2d_2"].weight_ratio == pytest.approx(1 / 16, rel=0.05)
        assert "w2a2" in str(cm.report) and "bitserial" in str(cm.report)


def test_mixed_plan_with_fp32_layer_and_forced_kind(digits_mod, digits, calib):
    plan = PrecisionPlan({"conv2d_0": Precision(8, 8), "conv2d_1": Precision(3, 5, "bitserial"),
                          "dense_0": Precision(1, 8, "packed")})
    with pytest.warns(UserWarning, match="conv2d_2"):
        cm = tvm_mp.compile(digits_mod, plan=plan, calibration=calib)
    assert cm.report.fp32_layers == ("conv2d_2",)
    kinds = {r.name: r.kernel for r in cm.report.layers}
    assert kinds == {"conv2d_0": "packed", "conv2d_1": "bitserial", "conv2d_2": "fp32", "dense_0": "packed"}
    x = digits.x_test[:16]
    np.testing.assert_allclose(cm.run(x), cm.reference(x), rtol=1e-5, atol=1e-4)


def test_export(digits_mod, calib, tmp_path):
    cm = tvm_mp.compile(digits_mod, plan=PrecisionPlan.uniform(digits_mod, Precision(4, 4)), calibration=calib)
    out = cm.export(tmp_path / "art")
    assert (out / "model.so").stat().st_size > 0
    assert PrecisionPlan.from_json((out / "plan.json").read_text()) == cm.plan
    report = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in report["layers"]] == ["conv2d_0", "conv2d_1", "conv2d_2", "dense_0"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet8", "ds_cnn", "mobilenet_v1_025", "fer_cnn"])
def test_builders_import_list_compile_and_match(name):
    builder = BUILDERS[name]
    mod = tvm_mp.load_onnx(builder.build(0), shapes={builder.input_name: builder.input_shape})
    layers = tvm_mp.list_layers(mod)
    assert layers and all(layer.macs > 0 for layer in layers)
    rng = np.random.default_rng(0)
    calib = [rng.random((2,) + tuple(builder.input_shape[1:]), dtype=np.float32) for _ in range(2)]
    x = rng.random(builder.input_shape, dtype=np.float32)
    # one build covers both ends: layers alternate w8a8 and w2a2 (and so do the integer edges between them)
    plan = PrecisionPlan({layer.name: Precision(8, 8) if i % 2 == 0 else Precision(2, 2)
                          for i, layer in enumerate(layers)})
    cm = tvm_mp.compile(mod, plan=plan, calibration=calib)
    assert {str(p) for p in cm.plan.precisions.values()} == {"w8a8", "w2a2"}
    np.testing.assert_array_equal(cm.run(x), cm.reference(x))


# ---- errors a user can cause: one line, a tvm_mp error, never a raw TVM trace --------------------------------

def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_unknown_layer_in_plan(digits_mod, calib):
    with pytest.raises(PlanError) as err:
        tvm_mp.compile(digits_mod, plan=PrecisionPlan({"conv9": Precision(4, 4)}), calibration=calib)
    assert "conv2d_0, conv2d_1, conv2d_2, dense_0" in one_line(err)


@pytest.mark.parametrize("bits", [0, 9, -1, 2.5, True])
def test_bits_out_of_range(bits):
    with pytest.raises(PlanError) as err:
        Precision(bits, 4)
    assert "1 to 8" in one_line(err)


def test_calibration_with_nan(digits_mod, calib):
    bad = [b.copy() for b in calib[:2]]
    bad[1][0, 0, 3, 3] = np.nan
    with pytest.raises(CalibrationError) as err:
        tvm_mp.compile(digits_mod, plan=PrecisionPlan.uniform(digits_mod, Precision(4, 4)), calibration=bad)
    assert "NaN" in one_line(err)


def test_calibration_with_wrong_shape(digits_mod):
    with pytest.raises(CalibrationError) as err:
        tvm_mp.compile(digits_mod, plan=PrecisionPlan.uniform(digits_mod, Precision(4, 4)),
                       calibration=[np.zeros((4, 3, 8, 8), np.float32)])
    assert "(batch, 1, 8, 8)" in one_line(err)


def test_missing_calibration(digits_mod):
    with pytest.raises(CalibrationError) as err:
        tvm_mp.compile(digits_mod, plan=PrecisionPlan.uniform(digits_mod, Precision(4, 4)))
    assert "calibration=" in one_line(err)


def test_wrong_input_shape_at_run(digits_mod, calib):
    cm = tvm_mp.compile(digits_mod, plan=PrecisionPlan.uniform(digits_mod, Precision(8, 8)), calibration=calib)
    with pytest.raises(InputShapeError) as err:
        cm.run(np.zeros((1, 1, 9, 9), np.float32))
    assert "(batch, 1, 8, 8)" in one_line(err)


def test_unknown_target(digits_mod, calib):
    with pytest.raises(Error) as err:
        tvm_mp.compile(digits_mod, plan=PrecisionPlan.uniform(digits_mod, Precision(8, 8)), calibration=calib,
                       target="tpu9000")
    assert "host" in one_line(err)


def test_unsupported_op_layer_stays_fp32_with_warning():
    """A conv whose weight is not a constant (computed at run time) cannot be quantized: it stays fp32, with a
    warning naming the fp32 layers, and the rest compiles."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "w")
    w2 = numpy_helper.from_array(rng.normal(size=(4, 4, 1, 1)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["c2"]),
             helper.make_node("Conv", ["c2", "c2w"], ["y"]),  # weight from the input: not quantizable
             helper.make_node("Identity", ["wdyn"], ["c2w"])]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6]),
         helper.make_tensor_value_info("wdyn", TensorProto.FLOAT, [2, 4, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 6])], [w, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    mod = tvm_mp.load_onnx(model)
    names = [layer.name for layer in tvm_mp.list_layers(mod)]
    assert names == ["conv2d_0", "conv2d_1"]  # the run-time-weight conv is not a quantizable layer
    calib = [{"x": rng.random((2, 1, 6, 6), dtype=np.float32), "wdyn": rng.random((2, 2, 4, 1, 1),
                                                                                   dtype=np.float32)[0]}]
    plan = PrecisionPlan({"conv2d_1": Precision(4, 4)})
    with pytest.warns(UserWarning, match="conv2d_0"):
        cm = tvm_mp.compile(mod, plan=plan, calibration=calib)
    x, wd = rng.random((1, 1, 6, 6), dtype=np.float32), rng.random((2, 4, 1, 1), dtype=np.float32)
    np.testing.assert_allclose(cm.run(x, wd), cm.reference(x, wd), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_budget_driven_compile_meets_its_budget(digits_mod, digits, calib):
    budget = tvm_mp.Budget(energy_uj=16.0)
    cm = tvm_mp.compile(digits_mod, budget=budget, calibration=calib, accuracy_fn=lambda m: top1(m, digits))
    outcome = cm.search
    assert outcome.meets_budget() and cm.report.energy_uj <= budget.energy_uj
    assert cm.report.energy_uj == pytest.approx(sum(r.energy_uj for r in cm.report.layers))
    assert cm.report.memory_kb == pytest.approx(outcome.predicted["memory_kb"])  # storage model = artifact
    assert outcome.search_score == pytest.approx(cm.report.accuracy)  # reference score = compiled model's top-1
    assert cm.report.accuracy > 0.9 and outcome.measured_latency_ms > 0
    np.testing.assert_array_equal(cm.run(digits.x_test[:32]), cm.reference(digits.x_test[:32]))


def test_impossible_budget_gives_the_smallest_achievable_values(digits_mod, calib):
    from tvm_mp.search.costs import BudgetError

    with pytest.raises(BudgetError) as err:
        tvm_mp.compile(digits_mod, budget=tvm_mp.Budget(energy_uj=1.0, latency_ms=0.001), calibration=calib)
    text = one_line(err)
    assert "energy_uj" in text and "latency_ms" in text and "smallest achievable" in text
    assert re.search(r"energy \d+(\.\d+)? uJ", text) and re.search(r"memory \d+(\.\d+)? kB", text)
    with pytest.raises(PlanError, match="not both"):
        tvm_mp.compile(digits_mod, plan=PrecisionPlan.uniform(digits_mod, Precision(8, 8)),
                       budget=tvm_mp.Budget(energy_uj=1.0), calibration=calib)
