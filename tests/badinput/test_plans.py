"""Bad precisions and plans through the API and the CLI. Class: strict types for bit-widths and plans.

A bit-width is an integer from its range and nothing else: ``True``, ``4.7``, ``4.0``, ``"4"``, ``1e400`` and
NaN are refused (never read as 1, 4 or an overflow), in ``Precision(...)`` and in plan files alike; a plan file's
unknown keys and layers are refused by name."""

import json
from pathlib import Path

import numpy as np

from ._corpus import Case, cli_case, corpus_tests
from ._helpers import file_cli_case
from ._models import digits_module, save_digits_module


def _precision(art, w_bits, a_bits, kind="auto"):
    import tvm_mp

    prec = tvm_mp.Precision(w_bits, a_bits, kind)
    assert type(prec.w_bits) is int and type(prec.a_bits) is int, prec
    return repr(prec)


def _float_format(art, exp_bits, man_bits):
    import tvm_mp

    return repr(tvm_mp.Precision.float(exp_bits, man_bits))


def _clustered(art, clusters):
    import tvm_mp

    return repr(tvm_mp.Precision.clustered(clusters))


def _parse(art, text):
    import tvm_mp

    return repr(tvm_mp.Precision.parse(text))


def _from_json(art, text):
    import tvm_mp

    plan = tvm_mp.PrecisionPlan.from_json(text)
    assert tvm_mp.PrecisionPlan.from_json(plan.to_json()) == plan  # what is accepted round-trips
    return plan.to_json()


def _layer(prec) -> str:
    return json.dumps({"layers": {"conv2d_0": {"w_bits": 4, "a_bits": 4}, "conv2d_1": prec}})


def _load_plan(art, name, content):
    import tvm_mp

    from ._helpers import write

    path = art.scratch("load-plan") / name if content is not ... else art.plan_json
    if content is not ...:
        write(path, content)
    plan = tvm_mp.PrecisionPlan.load(path)
    assert plan == tvm_mp.PrecisionPlan.from_json(art.plan_json.read_text())
    return len(plan)


def _load_plan_arg(art, arg):
    import tvm_mp

    return tvm_mp.PrecisionPlan.load(arg)


def _check_against_model(art, precisions):
    import tvm_mp
    from tvm_mp.driver import check_plan

    plan = tvm_mp.PrecisionPlan({n: tvm_mp.Precision.parse(p) for n, p in precisions.items()})
    return len(check_plan(digits_module(art), plan))


def _compile_plan(art, plan):
    import tvm_mp

    mod = digits_module(art)
    if plan == "empty":
        plan = tvm_mp.PrecisionPlan({})
    elif plan == "plan_json":
        plan = art.plan_json  # a pathlib.Path: read as a plan file
    elif plan == "missing":
        plan = art.root / "no-such-plan.json"
    model = tvm_mp.compile(mod, plan=plan, calibration=[np.load(art.calib_npy)])
    x = np.load(art.calib_npy)[:1]
    assert np.array_equal(model.run(x), model.reference(x)), "run differs from reference"
    assert {r.name: r.precision for r in model.report.layers} == {
        "conv2d_0": "w4a4", "conv2d_1": "w4a4", "conv2d_2": "w4a4", "dense_0": "w4a4"}
    return str(model.report.memory_kb)


def _uniform_with_text(art):
    import tvm_mp

    return tvm_mp.PrecisionPlan.uniform(digits_module(art), "w4a4")


def _layers_as_text(art):
    import tvm_mp

    return tvm_mp.PrecisionPlan({"conv2d_0": tvm_mp.Precision(4, 4)}, layers="conv2d_0")


COMPILE = ["compile", "{onnx}", "--shape", "input=1,1,8,8", "--calibration", "{calib_npy}", "-o", "{scratch}/out"]


def _cli_plan(id, prec_or_text, match, **kw):
    """``tvm-mp compile --plan plan.json`` with one layer's precision (or the whole file's text) given."""
    text = prec_or_text if isinstance(prec_or_text, (str, bytes)) else _layer(prec_or_text)
    return file_cli_case(id, {"plan.json": text}, COMPILE + ["--plan", "{scratch}/plan.json"], match, **kw)


CASES = [
    # -- Precision(...) -------------------------------------------------------------------------------------------
    Case("precision-ok", _precision, "ok", args=(4, 4)),
    Case("precision-numpy-int-ok", _precision, "ok", args=(np.int64(4), np.uint8(2))),
    Case("precision-w9", _precision, "error", "1 to 8", args=(9, 4)),
    Case("precision-bool", _precision, "error", "w_bits=True is a boolean", args=(True, 4)),
    Case("precision-a-bool", _precision, "error", "a_bits=False is a boolean", args=(4, False)),
    Case("precision-float", _precision, "error", "w_bits=4.7 is not a whole number", args=(4.7, 4)),
    Case("precision-float-integral", _precision, "error", "w_bits=4.0 is a float", args=(4.0, 4)),
    Case("precision-str", _precision, "error", "w_bits='4' is text", args=("4", 4)),
    Case("precision-huge", _precision, "error", "not a finite number", args=(1e400, 4)),
    Case("precision-nan", _precision, "error", "not a finite number", args=(float("nan"), 4)),
    Case("precision-negative", _precision, "error", "w_bits=-2 is out of range", args=(-2, 4)),
    Case("precision-zero", _precision, "error", "a_bits=0 is out of range", args=(4, 0)),
    Case("precision-none", _precision, "error", "w_bits=None", args=(None, 4)),
    Case("precision-kind-int", _precision, "error", "kind=3 is unknown", args=(4, 4, 3)),
    Case("precision-float-fraction", _float_format, "error", "exp_bits=4.5", args=(4.5, 3)),
    Case("precision-clusters-bool", _clustered, "error", "clusters=True", args=(True,)),
    Case("precision-clusters-str", _clustered, "error", "clusters='16'", args=("16",)),
    Case("parse-not-text", _parse, "error", "needs text", args=(4,)),
    Case("parse-fraction", _parse, "error", "cannot read precision", args=("w4.7a4",)),
    Case("parse-ok", _parse, "ok", args=(" W4A8/packed ",)),
    # -- PrecisionPlan.from_json ----------------------------------------------------------------------------------
    Case("json-ok", _from_json, "ok", args=(_layer({"w_bits": 2, "a_bits": 8, "kind": "bitserial"}),)),
    Case("json-float-format-ok", _from_json, "ok", args=(_layer({"kind": "float", "exp_bits": 5, "man_bits": 10}),)),
    Case("json-true", _from_json, "error", "w_bits=true is a boolean", args=(_layer({"w_bits": True, "a_bits": 4}),)),
    Case("json-names-layer", _from_json, "error", "plan layer 'conv2d_1'",
         args=(_layer({"w_bits": True, "a_bits": 4}),)),
    Case("json-fraction", _from_json, "error", "w_bits=4.7 is not a whole number",
         args=(_layer({"w_bits": 4.7, "a_bits": 4}),)),
    Case("json-integral-float", _from_json, "error", "a_bits=4.0 is a float",
         args=(_layer({"w_bits": 4, "a_bits": 4.0}),)),
    Case("json-string", _from_json, "error", 'w_bits="4" is text', args=(_layer({"w_bits": "4", "a_bits": 4}),)),
    Case("json-1e400", _from_json, "error", "not a finite number",
         args=('{"layers": {"conv2d_0": {"w_bits": 1e400, "a_bits": 4}}}',)),
    Case("json-nan", _from_json, "error", "not a finite number",
         args=('{"layers": {"conv2d_0": {"w_bits": NaN, "a_bits": 4}}}',)),
    Case("json-negative", _from_json, "error", "out of range", args=(_layer({"w_bits": -4, "a_bits": 4}),)),
    Case("json-zero", _from_json, "error", "out of range", args=(_layer({"w_bits": 4, "a_bits": 0}),)),
    Case("json-null", _from_json, "error", "w_bits=null", args=(_layer({"w_bits": None, "a_bits": 4}),)),
    Case("json-missing-key", _from_json, "error", "a_bits is missing", args=(_layer({"w_bits": 4}),)),
    Case("json-missing-float-keys", _from_json, "error", "exp_bits and man_bits are missing",
         args=(_layer({"kind": "float"}),)),
    Case("json-unknown-field", _from_json, "error", "unknown precision field(s) 'wbits'",
         args=(_layer({"w_bits": 4, "a_bits": 4, "wbits": 2}),)),
    Case("json-unknown-top-key", _from_json, "error", "unknown key(s) 'budget'",
         args=('{"layers": {}, "budget": 3}',)),
    Case("json-kind-number", _from_json, "error", "kind=2 is unknown",
         args=(_layer({"w_bits": 4, "a_bits": 4, "kind": 2}),)),
    Case("json-kind-unknown", _from_json, "error", 'kind="int4" is unknown',
         args=(_layer({"w_bits": 4, "a_bits": 4, "kind": "int4"}),)),
    Case("json-finite-text", _from_json, "error", 'finite="yes" must be true or false',
         args=(_layer({"kind": "float", "exp_bits": 4, "man_bits": 3, "finite": "yes"}),)),
    Case("json-precision-list", _from_json, "error", "must be an object", args=(_layer([4, 4]),)),
    Case("json-precision-text", _from_json, "error", "must be an object", args=(_layer("w4a4"),)),
    Case("json-top-list", _from_json, "error", '"layers" object, got list', args=("[1, 2]",)),
    Case("json-layers-list", _from_json, "error", "with layers list", args=('{"layers": ["conv2d_0"]}',)),
    Case("json-no-layers", _from_json, "error", "with layers null", args=('{"conv2d_0": {"w_bits": 4}}',)),
    Case("json-truncated", _from_json, "error", "not valid JSON", args=(_layer({"w_bits": 4, "a_bits": 4})[:-9],)),
    Case("json-empty-text", _from_json, "error", "not valid JSON", args=("",)),
    Case("json-not-utf8", _from_json, "error", "not valid JSON", args=(b"\xff\xfe{\x00",)),
    Case("json-not-text", _from_json, "error", "PrecisionPlan.load(path)", args=(None,)),
    Case("json-empty-layer-name", _from_json, "error", "non-empty strings",
         args=('{"layers": {"": {"w_bits": 4, "a_bits": 4}}}',)),
    # -- PrecisionPlan.load ---------------------------------------------------------------------------------------
    Case("load-ok", _load_plan, "ok", args=("", ...)),
    Case("load-missing", _load_plan_arg, "error", "not found", args=(Path("/no/such/plan.json"),)),
    Case("load-directory", _load_plan, "error", "is a directory", args=("dir.json", None)),
    Case("load-empty-file", _load_plan, "error", "is empty", args=("empty.json", "")),
    Case("load-binary", _load_plan, "error", "not valid JSON", args=("garbage.json", bytes(range(256)))),
    Case("load-not-a-path", _load_plan_arg, "error", "needs a file path", args=(3,)),
    # -- a plan against the model ---------------------------------------------------------------------------------
    Case("model-other-model", _check_against_model, "error", "another model",
         args=({"fc1": "w4a4", "fc2": "w8a8"},)),
    Case("model-unknown-layer", _check_against_model, "error", "unknown layer 'conv2d_9'",
         args=({"conv2d_0": "w4a4", "conv2d_9": "w4a4"},)),
    Case("model-partial-ok", _check_against_model, "ok", args=({"conv2d_1": "w2a2"},)),
    Case("compile-empty-plan", _compile_plan, "error", "plan is empty", args=("empty",)),
    Case("compile-plan-text", _compile_plan, "error", "is text", args=("w4a4",)),
    Case("compile-plan-path-missing", _compile_plan, "error", "not found", args=("missing",)),
    Case("compile-plan-path-ok", _compile_plan, "ok", args=("plan_json",), timeout_s=300.0),
    Case("uniform-with-text", _uniform_with_text, "error", "needs a Precision"),
    Case("plan-layers-text", _layers_as_text, "error", "as a list"),
    # -- tvm-mp compile --plan ------------------------------------------------------------------------------------
    cli_case("cli-plan-w9", COMPILE + ["--plan", "w9a4"], "1 to 8"),
    cli_case("cli-plan-w0", COMPILE + ["--plan", "w0a4"], "out of range"),
    cli_case("cli-plan-fraction", COMPILE + ["--plan", "w4.7a4"], "cannot read precision"),
    cli_case("cli-plan-missing-file", COMPILE + ["--plan", "{scratch}/none.json"], "not found"),
    cli_case("cli-plan-directory", COMPILE + ["--plan", "{scratch}"], "is a directory"),
    _cli_plan("cli-plan-file-true", {"w_bits": True, "a_bits": 4}, "w_bits=true is a boolean"),
    _cli_plan("cli-plan-file-fraction", {"w_bits": 4.7, "a_bits": 4}, "not a whole number"),
    _cli_plan("cli-plan-file-string", {"w_bits": 4, "a_bits": "4"}, "is text"),
    _cli_plan("cli-plan-file-unknown-field", {"w_bits": 4, "a_bits": 4, "note": "x"}, "'note'"),
    _cli_plan("cli-plan-file-unknown-top", '{"layers": {}, "model": "digits"}', "'model'"),
    _cli_plan("cli-plan-file-truncated", '{"layers": {"conv2d_0": {"w_bits": 4,', "not valid JSON"),
    _cli_plan("cli-plan-file-empty", "", "is empty"),
    _cli_plan("cli-plan-file-other-model", '{"layers": {"fc1": {"w_bits": 4, "a_bits": 4}}}', "another model"),
]


outcomes, test_case = corpus_tests(CASES, prepare=save_digits_module)
