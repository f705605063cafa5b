"""Bias correction: the expected output shift of a quantized layer, measured against NumPy, and cancelled."""

import numpy as np
import pytest
import tvm
from tvm import relax

from tvm_mp import Precision, PrecisionPlan, _tvm
from tvm_mp.errors import CalibrationError
from tvm_mp.quantize import fastconv
from tvm_mp.quantize.calibrate import calibrate
from tvm_mp.quantize.correction import corrected_bias, input_shift, output_shift
from tvm_mp.quantize.interpreter import Interpreter
from tvm_mp.quantize.reference import im2col
from tvm_mp.quantize.scheme import ActQuant, quantize_weights
from tvm_mp.search.accuracy import PlanEvaluator
from tvm_mp.workload import ConvParams


@pytest.mark.parametrize("groups,padding", [(1, 1), (4, 0), (2, 1)])
def test_output_shift_is_the_mean_output_error_of_the_quantized_weights(groups, padding):
    rng = np.random.default_rng(groups)
    x = rng.normal(0.3, 1.0, (3, 4, 7, 7)).astype(np.float32)
    w = rng.normal(0, 0.5, (8, 4 // groups, 3, 3)).astype(np.float32)
    w_q, scale = quantize_weights(w, 3)
    params = ConvParams((1, 1), (padding,) * 4, (1, 1), groups)
    cols = im2col(x, 3, 3, params, 0.0)  # [N, G, OH, OW, R]
    mean = cols.transpose(1, 0, 2, 3, 4).reshape(groups, -1, cols.shape[-1]).astype(np.float64).mean(axis=1)
    y = fastconv.conv2d(x.astype(np.float64), w.astype(np.float64), params, 0.0, np.float64)
    wd = w_q.astype(np.float64) * scale.astype(np.float64)[:, None, None, None]
    y_q = fastconv.conv2d(x.astype(np.float64), wd, params, 0.0, np.float64)
    np.testing.assert_allclose(output_shift(w, w_q, scale, mean, groups), (y_q - y).mean(axis=(0, 2, 3)),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("groups", [1, 4])
def test_output_shift_with_the_input_quantizer_is_the_mean_error_of_the_quantized_layer(groups):
    """1x1 kernel: every input position enters each window once, so the per-channel input shift is exact."""
    rng = np.random.default_rng(groups)
    x = rng.normal(0.3, 1.0, (3, 4, 5, 5)).astype(np.float32)
    w = rng.normal(0, 0.5, (8, 4 // groups, 1, 1)).astype(np.float32)
    w_q, scale = quantize_weights(w, 3)
    params = ConvParams((1, 1), (0,) * 4, (1, 1), groups)
    act = ActQuant.from_range(-1.0, 1.5, 3)  # clips the upper tail: the input mean moves
    x_hat = act.dequantize(act.quantize(x)).astype(np.float64)
    mean = x.astype(np.float64).transpose(1, 0, 2, 3).reshape(groups, 4 // groups, -1).mean(axis=2)
    shift = input_shift(x.transpose(1, 0, 2, 3).reshape(4, -1), act)
    wd = w_q.astype(np.float64) * scale.astype(np.float64)[:, None, None, None]
    y = fastconv.conv2d(x.astype(np.float64), w.astype(np.float64), params, 0.0, np.float64)
    y_qq = fastconv.conv2d(x_hat, wd, params, 0.0, np.float64)
    np.testing.assert_allclose(output_shift(w, w_q, scale, mean, groups, shift), (y_qq - y).mean(axis=(0, 2, 3)),
                               rtol=1e-6, atol=1e-9)


def test_dense_shift_and_statistics_that_do_not_fit_leave_the_bias_alone():
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 1.0, (50, 6))
    w = rng.normal(0, 0.5, (3, 6)).astype(np.float32)
    w_q, scale = quantize_weights(w, 2)
    want = (x @ (w_q * scale[:, None]).T - x @ w.T).mean(axis=0)
    np.testing.assert_allclose(output_shift(w, w_q, scale, x.mean(axis=0)[None], 1), want, rtol=1e-9)
    assert output_shift(w, w_q, scale, x.mean(axis=0)[None, :5], 1) is None

    class Stats:
        mean = x.mean(axis=0)[None, :5]
        channel_sample = None

    bias = np.ones(3, np.float32)
    act = ActQuant.from_range(-1, 1, 4)
    assert corrected_bias(w, w_q, scale, bias, Stats, act, 1) is bias
    assert corrected_bias(w, w_q, scale, None, Stats, act, 1) is None  # no bias: nowhere to put one

    class Huge:  # a shift beyond float32 (an outlier layer): the trained bias stays, nothing raises
        mean = np.full((1, 6), 1e33)
        channel_sample = None

    huge = (w * np.float32(1e8)).astype(np.float32)
    hq, hs = quantize_weights(huge, 2)
    assert corrected_bias(huge, hq, hs, bias, Huge, act, 1) is bias


def one_conv(seed=0, k=3):
    """x (1,3,6,6) -> conv kxk (no padding) + bias -> output (a float epilogue), with a dead output channel."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.4, (5, 3, k, k)).astype(np.float32)
    w[2] = 0.0
    b = rng.normal(0, 0.1, (1, 5, 1, 1)).astype(np.float32)
    x = relax.Var("x", relax.TensorType((1, 3, 6, 6), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            c = bb.emit(relax.op.nn.conv2d(x, _tvm.const(w)))
            out = bb.emit_output(relax.op.add(c, _tvm.const(b)))
        bb.emit_func_output(out)
    return bb.get()


def test_full_correction_cancels_the_mean_output_error_on_the_calibration_data():
    mod = one_conv(k=1)  # 1x1: the per-channel input shift is exact (see above)
    rng = np.random.default_rng(1)
    data = [rng.normal(0.2, 1.0, (4, 3, 6, 6)).astype(np.float32) for _ in range(2)]  # 288 values per channel
    plan = PrecisionPlan.uniform(mod, Precision(3, 8))
    fp32 = np.concatenate([Interpreter(mod).run([d]) for d in data])
    errors = {}
    for mode in ("off", "full"):
        ev = PlanEvaluator(mod, calibrate(mod, data, bias_correction=mode))
        y = np.concatenate([ev.run(plan, [d]) for d in data])
        errors[mode] = np.abs((y - fp32).astype(np.float64).mean(axis=(0, 2, 3)))
    # what remains: the bias rounded to the accumulator's unit s_in * s_w (the integer kernels' bias); the dead
    # channel (2) is exactly its bias either way
    unit = ev.bank.layer("conv2d_0", plan["conv2d_0"]).out_scale().astype(np.float64)
    live = np.arange(5) != 2
    assert (errors["full"][live] <= 0.5 * unit[live] * 1.001).all()
    assert (errors["off"][live] > 0.8 * unit[live]).any()
    assert errors["full"][2] == errors["off"][2] < 1e-6


def test_bias_correction_choice_is_checked():
    with pytest.raises(CalibrationError, match="bias correction"):
        calibrate(one_conv(), [np.zeros((1, 3, 6, 6), np.float32)], bias_correction="yes")
    ranges = calibrate(one_conv(), [np.zeros((1, 3, 6, 6), np.float32)], statistics=False)
    assert all(r.mean is None and r.channel_sample is None for r in ranges.values())


def test_compiled_layer_holds_the_corrected_bias():
    """QuantizeWeights writes the same corrected bias the plan scorer uses (so the integers agree)."""
    from tvm_mp.passes.pipeline import annotate_phase, quantize_phase

    mod = one_conv(3)
    rng = np.random.default_rng(2)
    data = [rng.normal(0.2, 1.0, (2, 3, 6, 6)).astype(np.float32)]
    ranges = calibrate(mod, data)
    plan = PrecisionPlan.uniform(mod, Precision(4, 4))
    quantized = tvm.transform.Sequential(annotate_phase(plan, ranges) + quantize_phase(ranges))(mod)
    ev = PlanEvaluator(mod, ranges)
    np.testing.assert_array_equal(Interpreter(quantized, quantized=True).run(data), ev.run(plan, data))
    uncorrected = PlanEvaluator(mod, calibrate(mod, data, bias_correction="off")).run(plan, data)
    assert not np.array_equal(uncorrected, ev.run(plan, data))
