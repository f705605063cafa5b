"""tvm_mp.frontend.canonicalize / tvm_mp.passes.Canonicalize: modules a TVM user already has work in tvm-mp.

Raw ``from_onnx`` output (batch_norm, ``permute_dims(const)`` Gemm weight), a ``relax.frontend.nn`` module from
``export_tvm`` (entry ``forward``, weights as parameters until bound), a TVMScript module with constants; and the
one-line errors for legalized modules, unbound weights, dynamic shapes and an unclear entry.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from onnx import helper
from tvm import relax
from tvm.relax.frontend import nn
from tvm.relax.frontend.onnx import from_onnx
from tvm.script import ir as I
from tvm.script import relax as R

import tvm_mp
from tvm_mp import Precision, PrecisionPlan, _tvm
from tvm_mp.errors import ModelError, UnsupportedError
from tvm_mp.frontend import canonicalize, load_onnx
from tvm_mp.layers import annotated_layer_functions, list_layers
from tvm_mp.passes import AnnotatePrecision, Canonicalize, mixed_precision_passes
from tvm_mp.quantize.calibrate import calibrate

from .test_frontend import _assert_one_line, _init, _model, _ort, _rand

X_SHAPE = (1, 3, 8, 8)


# --- the three kinds of user module ------------------------------------------------------------------------------


def onnx_conv_bn_gemm(batch=1):
    """Conv+BatchNormalization+Relu+Flatten+Gemm(transB) with seeded random weights."""
    rng = np.random.default_rng(0)
    inits = [
        _init("W", _rand(rng, 4, 3, 3, 3)), _init("B", _rand(rng, 4)),
        _init("scale", _rand(rng, 4, lo=0.5, hi=1.5)), _init("beta", _rand(rng, 4)),
        _init("mean", _rand(rng, 4)), _init("var", _rand(rng, 4, lo=0.5, hi=1.5)),
        _init("G", _rand(rng, 5, 4 * 8 * 8)), _init("GB", _rand(rng, 5)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "beta", "mean", "var"], ["bn"], epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "G", "GB"], ["y"], transB=1),
    ]
    return _model(nodes, [("x", [batch, 3, 8, 8])], [("y", None)], inits)


def raw_onnx_module():
    return from_onnx(onnx_conv_bn_gemm(), shape_dict={"x": list(X_SHAPE)}, keep_params_in_input=False)


class ConvNet(nn.Module):
    def __init__(self):
        self.conv = nn.Conv2D(3, 4, 3, padding=1, bias=True)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        y = nn.op.relu(self.conv(x))
        return self.fc(nn.op.reshape(y, (1, 4 * 8 * 8)))


def exported_nn(skip: tuple[str, ...] = ()):
    """``ConvNet`` exported with ``export_tvm``; every parameter bound to seeded random data except ``skip``."""
    mod, params = ConvNet().export_tvm({"forward": {"x": nn.spec.Tensor(X_SHAPE, "float32")}})
    rng = np.random.default_rng(1)
    values = {name: tvm.runtime.tensor(rng.normal(0, 0.3, [int(d) for d in p.shape]).astype(np.float32))
              for name, p in params}
    return relax.transform.BindParams("forward", {k: v for k, v in values.items() if k not in skip})(mod)


def tvmscript_module():
    """TVMScript, entry named ``infer``, constant weights; the dense weight is ``permute_dims(const)``."""
    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.3, (1, 4, 1, 1)).astype(np.float32)
    fc = rng.normal(0, 0.3, (5, 64)).astype(np.float32)

    @I.ir_module
    class Module:
        @R.function
        def infer(x: R.Tensor((1, 3, 8, 8), "float32")) -> R.Tensor((1, 5), "float32"):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(w), strides=2, padding=1)
                c = R.add(c, R.const(b))
                r = R.nn.relu(c)
                f = R.reshape(r, R.shape([1, 64]))
                wt = R.permute_dims(R.const(fc), axes=[1, 0])
                y = R.matmul(f, wt)
                R.output(y)
            return y

    return Module


USER_MODULES = {"from_onnx": raw_onnx_module, "export_tvm": exported_nn, "tvmscript": tvmscript_module}


def run_fp32(mod, x, func="main"):
    """Build with ``tvm.compile(mod, "llvm")`` and run ``func`` in a ``relax.VirtualMachine``."""
    vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
    return vm[func](tvm.runtime.tensor(x, tvm.cpu())).numpy()


def entry_of(mod):
    return [gv.name_hint for gv, f in mod.functions_items() if isinstance(f, relax.Function)][0]


def call_ops(mod):
    return [b.value.op.name for block in mod["main"].body.blocks for b in block.bindings
            if isinstance(b.value, relax.Call) and isinstance(b.value.op, tvm.ir.Op)]


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(3).normal(0, 1, X_SHAPE).astype(np.float32)


@pytest.fixture(scope="module")
def calib():
    rng = np.random.default_rng(4)
    return [rng.normal(0, 1, X_SHAPE).astype(np.float32) for _ in range(4)]


# --- (a)-(c): every layer found, numerics kept ---------------------------------------------------------------


def test_raw_from_onnx_lists_conv_and_dense(x):
    raw = raw_onnx_module()
    assert "relax.nn.batch_norm" in [b.value.op.name for block in raw["main"].body.blocks for b in block.bindings
                                     if isinstance(b.value, relax.Call) and hasattr(b.value.op, "name")]
    layers = list_layers(raw)
    assert [(layer.name, layer.op) for layer in layers] == [("conv2d_0", "conv2d"), ("dense_0", "dense")]
    assert layers[1].weight_shape == (5, 256) and layers[1].has_bias
    # the same names as the load_onnx import of the same model
    assert [layer.name for layer in list_layers(load_onnx(onnx_conv_bn_gemm()))] == ["conv2d_0", "dense_0"]

    canon = canonicalize(raw)
    ops = call_ops(canon)
    assert "relax.nn.batch_norm" not in ops and "relax.permute_dims" not in ops
    assert [layer.name for layer in list_layers(canon)] == ["conv2d_0", "dense_0"]
    want = run_fp32(raw, x)
    np.testing.assert_allclose(run_fp32(canon, x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(want, _ort(onnx_conv_bn_gemm(), {"x": x}), rtol=1e-4, atol=1e-5)


def test_export_tvm_module_with_bound_params(x):
    mod = exported_nn()
    assert entry_of(mod) == "forward"
    assert [(layer.name, layer.op) for layer in list_layers(mod)] == [("conv2d_0", "conv2d"), ("dense_0", "dense")]
    canon = canonicalize(mod)
    assert [gv.name_hint for gv in canon.get_global_vars()] == ["main"]
    assert str(canon["main"].attrs["global_symbol"]) == "main"
    assert "relax.permute_dims" not in call_ops(canon)
    np.testing.assert_allclose(run_fp32(canon, x), run_fp32(mod, x, "forward"), rtol=1e-5, atol=1e-6)


def test_tvmscript_module_with_constants(x):
    mod = tvmscript_module()
    layers = list_layers(mod)
    assert [(layer.name, layer.op, layer.has_bias) for layer in layers] == [("conv2d_0", "conv2d", True),
                                                                         ("dense_0", "dense", False)]
    canon = canonicalize(mod)
    assert entry_of(canon) == "main" and "relax.permute_dims" not in call_ops(canon)
    np.testing.assert_allclose(run_fp32(canon, x), run_fp32(mod, x, "infer"), rtol=1e-5, atol=1e-6)


# --- (e), (f): idempotent, a no-op on canonical modules -----------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(USER_MODULES))
def test_idempotent(kind):
    once = canonicalize(USER_MODULES[kind]())
    twice = canonicalize(once)
    assert twice is once
    assert _tvm.structural_equal(Canonicalize()(once), once)
    assert [layer.name for layer in list_layers(twice)] == ["conv2d_0", "dense_0"]


def test_load_onnx_output_unchanged():
    mod = load_onnx(onnx_conv_bn_gemm())
    copy = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    assert canonicalize(mod) is mod
    assert _tvm.structural_equal(Canonicalize()(mod), copy)
    assert _tvm.structural_equal(canonicalize(copy), mod)


# --- the pass in a user's Sequential ---------------------------------------------------------------------------


def test_annotate_on_raw_module_says_canonicalize_first():
    raw = raw_onnx_module()
    with pytest.raises(ModelError) as err:
        AnnotatePrecision(PrecisionPlan.uniform(raw, Precision(8, 8)))(raw)
    _assert_one_line(err, "Canonicalize()")


@pytest.mark.parametrize("kind", sorted(USER_MODULES))
def test_canonicalize_first_in_users_sequential(kind, calib):
    raw = USER_MODULES[kind]()
    plan = PrecisionPlan.uniform(raw, Precision(4, 8))
    ranges = calibrate(canonicalize(raw), calib)  # calibration reads the canonical main
    out = tvm.transform.Sequential([Canonicalize(), AnnotatePrecision(plan, ranges)])(raw)
    assert sorted(annotated_layer_functions(out)) == ["conv2d_0", "dense_0"]
    assert [layer.name for layer in list_layers(out)] == ["conv2d_0", "dense_0"]  # names stable
    assert isinstance(mixed_precision_passes(plan, ranges)[0], type(Canonicalize()))


# --- compile end to end ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(USER_MODULES))
def test_compile_matches_reference(kind, x, calib):
    raw = USER_MODULES[kind]()
    plan = PrecisionPlan.uniform(raw, Precision(8, 8))
    model = tvm_mp.compile(raw, plan=plan, calibration=calib)  # the driver canonicalizes the raw module
    assert [r.name for r in model.report.layers] == ["conv2d_0", "dense_0"]
    np.testing.assert_array_equal(model.run(x), model.reference(x))


# --- (b), (d) and the other one-line errors ----------------------------------------------------------------------


def test_one_unbound_weight():
    mod = exported_nn(skip=("fc.weight",))
    for call in (canonicalize, list_layers, Canonicalize()):
        with pytest.raises(ModelError) as err:
            call(mod)
        _assert_one_line(err, "fc.weight", "BindParams", "forward", "export_tvm", "keep_params_in_input=False")


def test_tvmscript_weights_as_parameters():
    @I.ir_module
    class Module:
        @R.function
        def main(x: R.Tensor((1, 64), "float32"), w: R.Tensor((5, 64), "float32")) -> R.Tensor((1, 5), "float32"):
            with R.dataflow():
                y = R.matmul(x, R.permute_dims(w, axes=[1, 0]))
                R.output(y)
            return y

    with pytest.raises(ModelError) as err:
        list_layers(Module)
    _assert_one_line(err, "parameters of main", "w;", 'BindParams("main"')
    bound = relax.transform.BindParams("main", {"w": np.ones((5, 64), np.float32)})(Module)
    assert [layer.name for layer in list_layers(bound)] == ["dense_0"]


def test_from_onnx_with_params_in_input():
    mod = from_onnx(onnx_conv_bn_gemm(), shape_dict={"x": list(X_SHAPE)}, keep_params_in_input=True)
    with pytest.raises(ModelError) as err:
        list_layers(mod)
    _assert_one_line(err, "W", "BindParams")


def test_legalized_module():
    legal = relax.transform.LegalizeOps()(canonicalize(raw_onnx_module()))
    for call in (canonicalize, list_layers, Canonicalize()):
        with pytest.raises(ModelError) as err:
            call(legal)
        _assert_one_line(err, "legalized", "LegalizeOps")


def test_module_lowered_by_tvm_compile_pipeline():
    lowered = relax.get_pipeline("default")(canonicalize(raw_onnx_module()))
    with pytest.raises(ModelError) as err:
        list_layers(lowered)
    _assert_one_line(err, "LegalizeOps/tvm.compile")


def test_dynamic_input():
    mod = from_onnx(onnx_conv_bn_gemm(batch="N"), keep_params_in_input=False)
    with pytest.raises(UnsupportedError) as err:
        list_layers(mod)
    _assert_one_line(err, "input x", "dynamic")


def test_entry_must_be_clear():
    mod = exported_nn()
    second = mod["forward"].with_attr("global_symbol", "forward2")
    both = tvm.IRModule({mod.get_global_var("forward"): mod["forward"], tvm.ir.GlobalVar("forward2"): second})
    with pytest.raises(ModelError) as err:
        list_layers(both)
    _assert_one_line(err, "forward, forward2", "entry=")
    canon = canonicalize(both, entry="forward2")
    assert [layer.name for layer in list_layers(canon)] == ["conv2d_0", "dense_0"]
    assert "main" in [gv.name_hint for gv in canon.get_global_vars()]


def test_not_a_module():
    with pytest.raises(ModelError) as err:
        canonicalize("model.onnx")
    _assert_one_line(err, "IRModule", "str")
