import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from tvm.relax.frontend.onnx import from_onnx

from tvm_mp import _tvm
from tvm_mp.passes.canonicalize_clip import CanonicalizeClip

from .conftest import op_counts


def clip_model(lo, hi):
    inits, inputs = [], ["x"]
    for name, value in (("lo", lo), ("hi", hi)):
        if value is None:
            inputs.append("")
        else:
            inits.append(numpy_helper.from_array(np.array(value, np.float32), name))
            inputs.append(name)
    while inputs and inputs[-1] == "":
        inputs.pop()
    graph = helper.make_graph(
        [helper.make_node("Clip", inputs, ["c"]), helper.make_node("Max", ["c", "x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def imported(model):
    import tvm

    mod = from_onnx(model, keep_params_in_input=False)
    return tvm.relax.transform.FoldConstant()(mod)


@pytest.mark.parametrize("lo,hi", [(0.0, 6.0), (-1.0, None), (None, 0.5)])
def test_structure_and_numerics(lo, hi):
    model = clip_model(lo, hi)
    before = imported(model)
    assert any(k.startswith("call_tir:max") or k.startswith("call_tir:min") for k in op_counts(before["main"]))
    after = CanonicalizeClip()(before)
    counts = op_counts(after["main"])
    assert counts.get("relax.clip") == 1
    assert not any(k.startswith("call_tir:m") for k in counts)  # both PrimFunc calls folded away
    assert [gv.name_hint for gv in after.get_global_vars()] == ["main"]
    x = np.random.default_rng(0).normal(0, 3, (1, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(_tvm.run_relax(_tvm.build(after), [x]), _tvm.run_relax(_tvm.build(before), [x]))
    assert _tvm.structural_equal(after, CanonicalizeClip()(after))  # idempotent


def test_leaves_tensor_maximum_alone():
    before = imported(clip_model(None, None))
    after = CanonicalizeClip()(before)
    assert _tvm.structural_equal(before, after)
