import numpy as np
import pytest

from tvm_mp import Precision, PrecisionPlan, _tvm
from tvm_mp.layers import annotated_layer_functions, match_layers
from tvm_mp.passes import AnnotatePrecision, QuantizeWeights
from tvm_mp.quantize.qlayer import read_layer
from tvm_mp.quantize.scheme import quantize_weights, weight_qrange

from .conftest import op_counts


@pytest.fixture(scope="module")
def annotated(net, calib):
    from tvm_mp.quantize.calibrate import calibrate

    plan = PrecisionPlan({"conv2d_0": Precision(3, 8), "conv2d_1": Precision(1, 2), "conv2d_2": Precision(8, 8),
                          "conv2d_3": Precision(4, 1),
                          "dense_0": Precision(2, 4)})
    return AnnotatePrecision(plan, calibrate(net, calib))(net)


def test_structure_weights_become_int8_times_scale(annotated):
    out = QuantizeWeights()(annotated)
    for name, (_, func) in annotated_layer_functions(out).items():
        counts = op_counts(func)
        assert counts["relax.astype"] == 1 and counts["relax.multiply"] == 1, name
        layer = read_layer(func)
        lo, hi = weight_qrange(layer.precision.w_bits)
        assert layer.w_q.dtype == np.int8 and layer.w_q.min() >= lo and layer.w_q.max() <= hi
        if layer.precision.w_bits == 1:
            assert set(np.unique(layer.w_q)) <= {-1, 1}


def test_idempotent(annotated):
    once = QuantizeWeights()(annotated)
    assert _tvm.structural_equal(once, QuantizeWeights()(once))


def test_numerics_match_numpy_fake_quantization(net, annotated, calib):
    """The fake-quantized module (TVM, fp32) equals the fp32 network with NumPy-quantized weights."""
    out = QuantizeWeights()(annotated)
    x = calib[1][:1]
    got = _tvm.run_relax(_tvm.build(out), [x])
    from tvm_mp.quantize.interpreter import Interpreter

    expected = Interpreter(out, quantized=False).run([x])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    for name, (_, func) in annotated_layer_functions(annotated).items():
        weight = match_layers(func)[0].weight
        bits = int(func.attrs["tvm_mp.w_bits"])
        w_q, scale = quantize_weights(weight, bits)
        layer = read_layer(annotated_layer_functions(out)[name][1])
        np.testing.assert_array_equal(layer.w_q, w_q)
        np.testing.assert_array_equal(layer.w_scale, scale)
