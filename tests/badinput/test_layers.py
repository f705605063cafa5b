"""Conv / matmul ops tvm-mp cannot quantize, through the API and the CLI. Class: every layer the product cannot
quantize is named in a warning and in the report, with the reason; the model still compiles and runs.

Each case builds a tiny ONNX model with ``onnx.helper`` into its scratch directory, loads it and compiles it with a
uniform plan (which covers only the quantizable layers). The warning must name the op, its kind and the reason;
the case function checks the report (text, JSON round trip through ``tvm_mp.load``) and that ``run`` equals
``reference``: bit for bit where the unquantized parts are ops the reference runs through TVM (built for the same
generic ``llvm`` target: conv1d, conv3d, transposed convs, float16 convs), to float tolerance where the reference
computes them in NumPy (float32 conv2d and matmul: another summation order). Forms tvm-mp does quantize (grouped,
dilated, asymmetric padding, depthwise) compile with no such warning and equal their reference exactly.
"""

import json
import warnings

import numpy as np

from ._corpus import Case, corpus_tests

# --- tiny ONNX models ------------------------------------------------------------------------------------------


def _weights(*shape):
    seed = sum((i + 1) * d for i, d in enumerate(shape))
    return np.random.default_rng(seed).normal(0, 0.5, shape).astype(np.float32)


def _onnx(nodes, inputs, inits, elem=None):
    """A model of ``nodes`` with float32 inputs ``[(name, shape)]``, output ``y`` and initializers ``{name: array}``."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info("y", elem or TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, n) for n, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _node(op, ins, outs, **attrs):
    from onnx import helper

    return helper.make_node(op, ins, outs, **attrs)


def conv1d():
    return _onnx([_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1])], [("x", [1, 4, 8])],
                 {"w": _weights(4, 4, 3), "b": _weights(4)})


def conv3d():
    return _onnx([_node("Conv", ["x", "w"], ["y"])], [("x", [1, 2, 4, 4, 4])], {"w": _weights(4, 2, 3, 3, 3)})


def conv_transpose():
    return _onnx([_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])], [("x", [1, 4, 4, 4])],
                 {"w": _weights(4, 2, 3, 3)})


def conv_weight_input():
    """A conv whose weight is a graph input, after a quantizable conv (which feeds it)."""
    return _onnx([_node("Conv", ["x", "w0"], ["h"], pads=[1, 1, 1, 1]), _node("Conv", ["h", "w"], ["y"])],
                 [("x", [1, 4, 8, 8]), ("w", [4, 4, 3, 3])], {"w0": _weights(4, 4, 3, 3)})


def conv_weight_computed():
    """A conv whose weight is computed at run time from a graph input (w * w)."""
    return _onnx([_node("Mul", ["v", "v"], ["w"]), _node("Conv", ["x", "w"], ["y"])],
                 [("x", [1, 4, 8, 8]), ("v", [4, 4, 3, 3])], {})


def matmul_weight_input():
    return _onnx([_node("MatMul", ["x", "w"], ["y"])], [("x", [1, 16]), ("w", [16, 4])], {})


def matmul_activations():
    """x @ x^T of an activation (attention-like), after a quantizable dense layer."""
    return _onnx([_node("MatMul", ["x", "w0"], ["h"]), _node("Transpose", ["h"], ["ht"], perm=[1, 0]),
                  _node("MatMul", ["h", "ht"], ["y"])], [("x", [4, 16])], {"w0": _weights(16, 8)})


def matmul_batched():
    return _onnx([_node("MatMul", ["x", "w"], ["y"])], [("x", [2, 4, 16])], {"w": _weights(16, 8)})


def matmul_left_constant():
    return _onnx([_node("MatMul", ["w", "x"], ["y"])], [("x", [16, 4])], {"w": _weights(8, 16)})


def conv_float16():
    from onnx import TensorProto

    return _onnx([_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16), _node("Conv", ["xh", "w"], ["yh"]),
                  _node("Cast", ["yh"], ["y"], to=TensorProto.FLOAT)], [("x", [1, 4, 8, 8])],
                 {"w": _weights(4, 4, 3, 3).astype(np.float16)})


def conv2d_then_conv1d():
    """A quantizable conv2d (relu), reshaped into a conv1d: one layer quantized, one not."""
    return _onnx([_node("Conv", ["x", "w0"], ["c"], pads=[1, 1, 1, 1]), _node("Relu", ["c"], ["r"]),
                  _node("Reshape", ["r", "shape"], ["s"]), _node("Conv", ["s", "w1"], ["y"])],
                 [("x", [1, 4, 8, 8])],
                 {"w0": _weights(4, 4, 3, 3), "shape": np.array([1, 4, 64], np.int64), "w1": _weights(4, 4, 3)})


def gemm_then_matmul_input():
    """A quantizable dense layer (Gemm) and a matmul by a graph input."""
    return _onnx([_node("Gemm", ["x", "w0", "b0"], ["h"], transB=1), _node("MatMul", ["h", "w"], ["y"])],
                 [("x", [2, 16]), ("w", [8, 4])], {"w0": _weights(8, 16), "b0": _weights(8)})


def three_unquantizable():
    """conv1d, conv1d, then a ConvTranspose (after a reshape): numbered per op."""
    return _onnx([_node("Conv", ["x", "w0"], ["a"], pads=[1, 1]), _node("Conv", ["a", "w1"], ["b"], pads=[1, 1]),
                  _node("Reshape", ["b", "shape"], ["c"]), _node("ConvTranspose", ["c", "w2"], ["y"])],
                 [("x", [1, 4, 16])],
                 {"w0": _weights(4, 4, 3), "w1": _weights(4, 4, 3), "shape": np.array([1, 4, 4, 4], np.int64),
                  "w2": _weights(4, 2, 2, 2)})


def relu_only():
    return _onnx([_node("Relu", ["x"], ["y"])], [("x", [1, 4, 8, 8])], {})


def supported_forms():
    """Conv forms tvm-mp quantizes: grouped (2 groups of 2 channels), dilated with asymmetric padding and stride,
    depthwise."""
    return _onnx([_node("Conv", ["x", "w0"], ["a"], group=2, pads=[1, 1, 1, 1]),
                  _node("Conv", ["a", "w1"], ["b"], dilations=[2, 2], pads=[0, 1, 2, 0], strides=[2, 1]),
                  _node("Conv", ["b", "w2"], ["y"], group=4, pads=[1, 1, 1, 1])], [("x", [1, 4, 8, 8])],
                 {"w0": _weights(4, 2, 3, 3), "w1": _weights(4, 4, 3, 3), "w2": _weights(4, 1, 3, 3)})


# --- what a case does ------------------------------------------------------------------------------------------


def _save(art, case_id: str, builder: str):
    import onnx

    path = art.scratch(case_id) / f"{builder}.onnx"
    onnx.save(globals()[builder](), str(path))
    return path


def _inputs(mod, seed: int = 0) -> list[np.ndarray]:
    from tvm_mp import _tvm

    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, _tvm.expr_shape(p)).astype(np.float32) for p in mod["main"].params]


def _calibration(mod):
    from tvm_mp import _tvm

    names = [_tvm.var_name(p) for p in mod["main"].params]
    batches = [_inputs(mod, seed) for seed in (1, 2)]
    return [b[0] for b in batches] if len(names) == 1 else [dict(zip(names, b)) for b in batches]


def _compile(art, case_id: str, builder: str, plan=None, target="llvm"):
    """Load the model, compile it with ``plan`` (default: uniform w8a8); the warnings raised are returned and
    raised again (so the corpus sees them)."""
    import tvm_mp

    mod = tvm_mp.load_onnx(_save(art, case_id, builder))
    plan = plan if plan is not None else tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(8, 8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cm = tvm_mp.compile(mod, plan=plan, calibration=_calibration(mod), target=target)
    messages = [str(w.message) for w in caught]
    for message in messages:
        warnings.warn(message, stacklevel=2)
    return mod, cm, messages


def _check_run(mod, cm, exact: bool) -> None:
    """``run`` equals ``reference``: bit for bit, or to float tolerance (fp32 parts the reference computes in
    NumPy)."""
    xs = _inputs(mod, seed=7)
    y, ref = cm.run(*xs), cm.reference(*xs)
    assert y.shape == ref.shape and np.isfinite(y).all()
    if exact:
        np.testing.assert_array_equal(y, ref)
    else:
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(ref).max())))


def _unquantizable(art, case_id, builder, ops, quantized, exact, reason, round_trip=False):
    """Compile; the report names each unquantizable op (``ops``: their kinds in order) with ``reason`` in the first
    one's reason, in its text (and, with ``round_trip``, in the report ``tvm_mp.load`` reads back); ``quantized``
    layers get rows."""
    import tvm_mp

    mod, cm, messages = _compile(art, case_id, builder)
    report = cm.report
    assert [u.op for u in report.unquantizable] == list(ops), report.unquantizable
    assert reason.lower() in report.unquantizable[0].reason.lower(), report.unquantizable[0].reason
    assert [u.name for u in report.unquantizable] == [u.name for u in tvm_mp.unquantizable_layers(mod)]
    assert [r.name for r in report.layers] == list(quantized)
    assert all(r.precision == "w8a8" for r in report.layers)
    listed = [m for m in messages if "cannot quantize" in m]
    assert len(listed) == 1 and all(u.name in listed[0] for u in report.unquantizable), messages
    text = str(report)
    assert all(u.name in text and u.reason in text for u in report.unquantizable), text
    if round_trip:
        out = cm.export(art.scratch(case_id) / "out")
        assert tvm_mp.load(out).report == report  # the records round-trip through report.json
    _check_run(mod, cm, exact)


def _quantizable(art, case_id, builder, ops):
    """Forms tvm-mp quantizes: w8a8 layers of kinds ``ops``, nothing unquantizable, no such warning, exact."""
    mod, cm, messages = _compile(art, case_id, builder)
    assert not [m for m in messages if "cannot quantize" in m], messages
    assert [(r.op, r.precision) for r in cm.report.layers] == [(op, "w8a8") for op in ops]
    assert cm.report.unquantizable == ()
    _check_run(mod, cm, exact=True)


def _no_layers(art, case_id, builder):
    mod, cm, _ = _compile(art, case_id, builder)
    assert cm.report.layers == () and cm.report.unquantizable == ()
    _check_run(mod, cm, exact=True)


def _plan_names_unquantizable(art, case_id, builder, name):
    import tvm_mp

    _compile(art, case_id, builder, plan=tvm_mp.PrecisionPlan({name: tvm_mp.Precision(4, 4)}))


def _budget(art, case_id, builder):
    import tvm_mp

    mod = tvm_mp.load_onnx(_save(art, case_id, builder))
    tvm_mp.compile(mod, budget=tvm_mp.Budget(energy_uj=5.0), calibration=_calibration(mod))


def _explore(art, case_id, builder):
    """A Pareto front covers the quantizable layers; the ops it leaves out are named in the warning."""
    import tvm_mp

    mod = tvm_mp.load_onnx(_save(art, case_id, builder))
    front = tvm_mp.explore(mod, _calibration(mod), budgets=1, progress=False)
    assert front.points and all(set(p.plan) == {"conv2d_0"} for p in front.points)


def _cli(art, case_id, builder, argv):
    """``tvm-mp ARGV`` with ``{model}``, ``{calib}``, ``{scratch}`` filled in (the model, a calibration array for
    its first input and a plan naming ``float_conv1d_0`` written first)."""
    from onnx import shape_inference

    from tvm_mp.testing.isolate import _run_cli

    model = _save(art, case_id, builder)
    scratch = art.scratch(case_id)
    first = shape_inference.infer_shapes(globals()[builder]()).graph.input[0].type.tensor_type.shape
    calib = scratch / "calib.npy"
    np.save(calib, np.random.default_rng(1).normal(0, 1, (4,) + tuple(d.dim_value for d in first.dim)[1:])
            .astype(np.float32))
    (scratch / "plan.json").write_text(json.dumps({"layers": {"float_conv1d_0": {"w_bits": 4, "a_bits": 4}}}))
    names = dict(model=model, calib=calib, scratch=scratch)
    return _run_cli([a.format(**names) for a in argv])


def _cli_layers_mixed(art, case_id):
    result = _cli(art, case_id, "conv2d_then_conv1d", ["layers", "{model}"])
    lines = result.stdout.splitlines()
    assert lines[0].startswith("conv2d_0 ") and "macs=" in lines[0], result.stdout
    assert lines[1].startswith("float_conv1d_0 conv1d            in=(1, 4, 64) w=(4, 4, 3) out=(1, 4, 62) not "
                               "quantized: a 1-D convolution"), result.stdout
    return result


CONV1D_REASON = "float_conv1d_0 (conv1d, input (1, 4, 8), weight (4, 4, 3)): a 1-D convolution: tvm-mp quantizes"
CASES = [
    Case("conv1d", _unquantizable, "warn", CONV1D_REASON,
         args=("conv1d", "conv1d", ("conv1d",), (), True, "export it as a 2-D Conv", True)),
    Case("conv3d", _unquantizable, "warn", "float_conv3d_0 (conv3d, input (1, 2, 4, 4, 4), weight (4, 2, 3, 3, 3)): "
         "a 3-D convolution", args=("conv3d", "conv3d", ("conv3d",), (), True, "so it stays fp32")),
    Case("conv-transpose", _unquantizable, "warn", "float_conv2d_transpose_0 (conv2d_transpose, input (1, 4, 4, 4), "
         "weight (4, 2, 3, 3)): a transposed convolution (ConvTranspose)",
         args=("conv-transpose", "conv_transpose", ("conv2d_transpose",), (), True, "transposed convolution")),
    Case("conv-weight-input", _unquantizable, "warn", "float_conv2d_0 (conv2d, input (1, 4, 8, 8), weight "
         "(4, 4, 3, 3)): its weight is not a constant (graph input 'w', given at run time)",
         args=("conv-weight-input", "conv_weight_input", ("conv2d",), ("conv2d_0",), False,
               "make the weight an initializer", True)),
    Case("conv-weight-computed", _unquantizable, "warn", "(conv2d, input (1, 4, 8, 8), weight (4, 4, 3, 3)): its "
         "weight is not a constant (computed at run time by relax.multiply)",
         args=("conv-weight-computed", "conv_weight_computed", ("conv2d",), (), False, "constant weights only")),
    Case("matmul-weight-input", _unquantizable, "warn", "float_matmul_0 (matmul, input (1, 16), weight (16, 4)): its "
         "weight is not a constant (graph input 'w'",
         args=("matmul-weight-input", "matmul_weight_input", ("matmul",), (), False, "graph input 'w'")),
    Case("matmul-activations", _unquantizable, "warn", "float_matmul_0 (matmul, input (4, 8), weight (8, 4)): its "
         "weight is not a constant (computed at run time by relax.matmul)",
         args=("matmul-activations", "matmul_activations", ("matmul",), ("dense_0",), False,
               "constant weights only")),
    Case("matmul-batched", _unquantizable, "warn", "float_matmul_0 (matmul, input (2, 4, 16), weight (16, 8)): its "
         "input (2, 4, 16) is 3-D (a batched matmul)",
         args=("matmul-batched", "matmul_batched", ("matmul",), (), False, "reshape the input to 2-D")),
    Case("matmul-left-constant", _unquantizable, "warn", "(matmul, input (8, 16), weight (16, 4)): its constant "
         "operand is on the left (W @ x)",
         args=("matmul-left-constant", "matmul_left_constant", ("matmul",), (), False, "(x^T @ W^T)^T")),
    Case("conv-float16", _unquantizable, "warn", "float_conv2d_0 (conv2d, input (1, 4, 8, 8), weight (4, 4, 3, 3)): "
         "input dtype float16, weight dtype float16, output dtype float16: tvm-mp quantizes float32 layers only",
         args=("conv-float16", "conv_float16", ("conv2d",), (), True, "so it stays in float16")),
    Case("conv2d-then-conv1d", _unquantizable, "warn", CONV1D_REASON.replace("(1, 4, 8)", "(1, 4, 64)"),
         args=("conv2d-then-conv1d", "conv2d_then_conv1d", ("conv1d",), ("conv2d_0",), True, "1-D convolution")),
    Case("gemm-then-matmul-input", _unquantizable, "warn", "float_matmul_0 (matmul, input (2, 8), weight (8, 4)): its "
         "weight is not a constant (graph input 'w'",
         args=("gemm-then-matmul-input", "gemm_then_matmul_input", ("matmul",), ("dense_0",), False, "graph input")),
    Case("three-unquantizable", _unquantizable, "warn", "tvm-mp cannot quantize 3 layers of the model (it has no "
         "layer tvm-mp can quantize", args=("three-unquantizable", "three_unquantizable",
                                            ("conv1d", "conv1d", "conv2d_transpose"), (), True, "1-D convolution")),
    Case("no-layers", _no_layers, "warn", "the model has no conv or matmul layer", args=("no-layers", "relu_only")),
    Case("plan-names-unquantizable", _plan_names_unquantizable, "error", "layer 'float_conv1d_0' (conv1d) in the plan "
         "cannot be quantized: a 1-D convolution", error="PlanError",
         args=("plan-names-unquantizable", "conv2d_then_conv1d", "float_conv1d_0")),
    Case("budget-no-layers", _budget, "error", "no plan to search: the model has no layer tvm-mp can quantize "
         "(conv2d, dense); float_conv3d_0 (conv3d): a 3-D convolution", error="PlanError",
         args=("budget-no-layers", "conv3d")),
    Case("explore", _explore, "warn", CONV1D_REASON.replace("(1, 4, 8)", "(1, 4, 64)"),
         args=("explore", "conv2d_then_conv1d")),
    Case("supported-forms", _quantizable, "ok",
         args=("supported-forms", "supported_forms", ("conv2d", "conv2d", "depthwise_conv2d"))),
    Case("cli-layers-mixed", _cli_layers_mixed, "cli_ok", "float_conv1d_0", args=("cli-layers-mixed",)),
    Case("cli-layers-weight-input", _cli, "cli_ok", "its weight is not a constant (graph input 'w', given at run "
         "time)", args=("cli-layers-weight-input", "conv_weight_input", ("layers", "{model}"))),
    Case("cli-layers-none", _cli, "cli_ok", "no layer tvm-mp can quantize (conv2d, dense)",
         args=("cli-layers-none", "conv3d", ("layers", "{model}"))),
    Case("cli-compile-conv1d", _cli, "cli_ok", "not quantized (1 conv / matmul op tvm-mp cannot quantize",
         args=("cli-compile-conv1d", "conv2d_then_conv1d", ("compile", "{model}", "--plan", "w8a8", "--calibration",
                                                             "{calib}", "-o", "{scratch}/out"))),
    Case("cli-plan-names-unquantizable", _cli, "cli_error", "'float_conv1d_0' (conv1d) in the plan cannot be "
         "quantized", args=("cli-plan-names-unquantizable", "conv2d_then_conv1d",
                            ("compile", "{model}", "--plan", "{scratch}/plan.json", "--calibration", "{calib}", "-o",
                             "{scratch}/out"))),
]


outcomes, test_case = corpus_tests(CASES)
