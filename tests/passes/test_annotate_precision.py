import numpy as np
import pytest
import tvm

from tvm_mp import Precision, PrecisionPlan, _tvm
from tvm_mp.errors import PlanError
from tvm_mp.layers import annotated_layer_functions, list_layers
from tvm_mp.passes import AnnotatePrecision
from tvm_mp.quantize.calibrate import calibrate

from .conftest import op_counts


def test_structure_wraps_planned_layers_only(net, calib):
    plan = PrecisionPlan({"conv2d_0": Precision(4, 4), "dense_0": Precision(2, 2)})
    with pytest.warns(UserWarning, match="conv2d_1, conv2d_2, conv2d_3"):
        out = AnnotatePrecision(plan, calibrate(net, calib))(net)
    funcs = annotated_layer_functions(out)
    assert sorted(funcs) == ["conv2d_0", "dense_0"]
    attrs = funcs["dense_0"][1].attrs
    assert int(attrs["tvm_mp.w_bits"]) == 2 and str(attrs["tvm_mp.kind"]) == "bitserial"
    assert float(attrs["tvm_mp.in_scale"].value) > 0
    counts = op_counts(out["main"])
    assert counts["relax.nn.conv2d"] == 3  # the three unplanned convs stay
    assert "relax.matmul" not in counts
    assert counts["call:tvm_mp_conv2d_0"] == 1 and counts["call:tvm_mp_dense_0"] == 1
    assert counts["relax.add"] == 1  # only the residual add is left: the bias adds moved into the functions
    # names stay stable after annotation
    assert [layer.name for layer in list_layers(out)] == [layer.name for layer in list_layers(net)]


def test_idempotent(net, calib):
    plan = PrecisionPlan.uniform(net, Precision(8, 8))
    once = AnnotatePrecision(plan, calibrate(net, calib))(net)
    twice = AnnotatePrecision(plan, calibrate(net, calib))(once)
    assert _tvm.structural_equal(once, twice)


def test_numerics_unchanged(net, calib):
    out = AnnotatePrecision(PrecisionPlan.uniform(net, Precision(2, 2)), calibrate(net, calib))(net)
    x = calib[0][:1]
    np.testing.assert_allclose(_tvm.run_relax(_tvm.build(out), [x]), _tvm.run_relax(_tvm.build(net), [x]),
                               rtol=1e-5, atol=1e-5)


def test_unknown_layer_names_valid_choices(net):
    with pytest.raises(PlanError, match="conv2d_7.*conv2d_0, conv2d_1, conv2d_2, conv2d_3, dense_0"):
        AnnotatePrecision(PrecisionPlan({"conv2d_7": Precision(4, 4)}))(net)


def test_usable_in_users_sequential(net, calib):
    seq = tvm.transform.Sequential([AnnotatePrecision(PrecisionPlan({"conv2d_2": Precision(3, 5)}),
                                                      calibrate(net, calib)),
                                    tvm.relax.transform.FoldConstant()])
    with pytest.warns(UserWarning):
        out = seq(net)
    assert list(annotated_layer_functions(out)) == ["conv2d_2"]
