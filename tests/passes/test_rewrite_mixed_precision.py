import numpy as np
import pytest

from tvm_mp import Precision, PrecisionPlan, _tvm
from tvm_mp.errors import CalibrationError
from tvm_mp.layers import annotated_layer_functions
from tvm_mp.passes import AnnotatePrecision, QuantizeWeights, RewriteMixedPrecision
from tvm_mp.quantize.calibrate import calibrate
from tvm_mp.quantize.interpreter import Interpreter

from .conftest import op_counts


def quantized(net, calib, plan):
    return QuantizeWeights()(AnnotatePrecision(plan, calibrate(net, calib))(net))


@pytest.mark.parametrize("bits", [(8, 8), (4, 4), (2, 2), (1, 1), (3, 2), (1, 8), (8, 1)])
def test_numerics_exact_vs_numpy_reference(net, calib, bits):
    q = quantized(net, calib, PrecisionPlan.uniform(net, Precision(*bits)))
    lowered = RewriteMixedPrecision()(q)
    ex = _tvm.build(lowered)
    for x in (calib[0][:1], calib[2][3:4]):
        np.testing.assert_array_equal(_tvm.run_relax(ex, [x]), Interpreter(q, quantized=True).run([x]))


def test_structure_integer_and_float_edges(net, calib):
    q = quantized(net, calib, PrecisionPlan.uniform(net, Precision(4, 4)))
    lowered = RewriteMixedPrecision()(q)
    counts = op_counts(lowered["main"])
    assert not annotated_layer_functions(lowered)  # layer functions replaced and removed
    assert sum(v for k, v in counts.items() if k.endswith("_kernel")) == 5
    # conv2d_0 -> relu -> maxpool -> conv2d_1 is an integer edge: no quantize kernel for conv2d_1, relu folded,
    # maxpool runs on codes
    quantizers = sorted(k for k in counts if k.endswith("_quantize"))
    assert quantizers == ["call_tir:tvm_mp_conv2d_0_quantize", "call_tir:tvm_mp_conv2d_2_quantize",
                          "call_tir:tvm_mp_conv2d_3_quantize"]
    # relu after conv2d_0 and conv2d_3 folded into integer clamps; clip after conv2d_1 fused into its float
    # epilogue (its output fans out to conv2d_2 and the residual add)
    assert "relax.nn.relu" not in counts and "relax.clip" not in counts
    assert counts["relax.nn.max_pool2d"] == 1
    bindings = {b.var.name: b.value for blk in lowered["main"].body.blocks for b in blk.bindings}
    pooled = [v for v in bindings.values() if getattr(v, "op", None) is not None and
              getattr(v.op, "name", "") == "relax.nn.max_pool2d"][0]
    assert _tvm.expr_dtype(pooled.args[0]) == "uint8"
    # conv2d_3 -> relu -> reshape -> dense_0: integer edge through a reshape of codes
    assert "call_tir:tvm_mp_dense_0_quantize" not in counts


def test_weight_storage_is_packed(net, calib):
    q = quantized(net, calib, PrecisionPlan.uniform(net, Precision(2, 2, "packed")))
    lowered = RewriteMixedPrecision()(q)
    calls = [b.value for blk in lowered["main"].body.blocks for b in blk.bindings
             if getattr(getattr(b.value, "op", None), "name", "") == "relax.call_tir"
             and b.value.args[0].name_hint == "tvm_mp_conv2d_0_kernel"]
    weight = _tvm.const_value(calls[0].args[1].fields[1])
    assert weight.dtype == np.uint8 and weight.shape == (8, 7)  # 27 two-bit weights per channel in 7 bytes


def test_idempotent_once_lowered(net, calib):
    lowered = RewriteMixedPrecision()(quantized(net, calib, PrecisionPlan.uniform(net, Precision(2, 2))))
    assert _tvm.structural_equal(lowered, RewriteMixedPrecision()(lowered))


def test_needs_calibration(net):
    q = QuantizeWeights()(AnnotatePrecision(PrecisionPlan.uniform(net, Precision(4, 4)))(net))
    with pytest.raises(CalibrationError, match="calibration"):
        RewriteMixedPrecision()(q)
