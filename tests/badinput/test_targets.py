"""Bad targets through ``tvm_mp.targets.parse``, ``compile(target=...)`` and ``--target``: malformed JSON, kinds
tvm-mp does not build for (GPUs), CPUs and triples LLVM does not know (it would only warn and build for a generic
CPU), wrong types. Each is one line before any work."""

import json

import numpy as np

from ._corpus import Case, cli_case, corpus_tests
from ._helpers import literal
from ._models import digits_module, save_digits_module


def _parse(art, target):
    from tvm_mp.targets import parse

    t = parse(target)
    back = parse(json.loads(json.dumps(t.to_json())))  # what is accepted round-trips through target.json
    assert back == t and back.name == t.name, (t, back)
    return repr(t)


def _tvm_target(art, config):
    import tvm

    from tvm_mp.targets import parse

    return repr(parse(tvm.target.Target(config)))


def _compile(art, target):
    import tvm_mp

    mod = digits_module(art)
    plan = tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(8, 8))
    return tvm_mp.compile(mod, plan=plan, target=target, calibration=[np.load(art.calib_npy)])


AARCH64_A72 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "mattr": ["+neon"]}


COMPILE = ["compile", "{onnx}", "--shape", "input=1,1,8,8", "--calibration", "{calib_npy}", "--plan", "w8a8",
           "-o", "{scratch}/out"]

CASES = [
    Case("ok-host", _parse, "ok", args=("host",)),
    Case("ok-padded-name", _parse, "ok", args=(" llvm ",)),
    Case("ok-aarch64", _parse, "ok", args=("aarch64",)),
    Case("ok-cortex-m4", _parse, "ok", args=("cortex-m4",)),
    Case("ok-aarch64-cpu", _parse, "ok", args=(AARCH64_A72,)),
    Case("ok-json-text", _parse, "ok", args=(json.dumps(AARCH64_A72),)),
    Case("ok-x86-cpu", _parse, "ok", args=({"kind": "llvm", "mcpu": "x86-64"},)),
    Case("json-truncated", _parse, "error", "target JSON is malformed", args=('{"kind": "llvm"',)),
    Case("json-unquoted", _parse, "error", "target JSON is malformed", args=('{"kind": llvm}',)),
    Case("json-trailing-comma", _parse, "error", "target JSON is malformed", args=('{"kind": "llvm",}',)),
    Case("json-brace-only", _parse, "error", "target JSON is malformed", args=("{",)),
    Case("json-list", _parse, "error", "unknown target", args=('[{"kind": "llvm"}]',)),
    Case("json-no-kind", _parse, "error", 'Field "kind" is not found', args=("{}",)),
    Case("kind-unknown", _parse, "error", "target kind 'nope' is not supported", args=('{"kind": "nope"}',)),
    Case("kind-number", _parse, "error", "target kind 3", args=({"kind": 3},)),
    Case("kind-cuda-json", _parse, "error", "CPU kernels only", args=('{"kind": "cuda"}',)),
    Case("kind-cuda-dict", _parse, "error", "CPU kernels only", args=({"kind": "cuda", "arch": "sm_80"},)),
    Case("kind-opencl", _parse, "error", "CPU kernels only", args=({"kind": "opencl"},)),
    Case("kind-vulkan", _parse, "error", "CPU kernels only", args=({"kind": "vulkan"},)),
    Case("kind-cuda-tvm-target", _tvm_target, "error", "target kind 'cuda'", args=({"kind": "cuda"},)),
    Case("kind-cuda-in-target-json", _parse, "error", "CPU kernels only",
         args=({"name": "gpu", "tvm": {"kind": "cuda"}},)),
    Case("mcpu-unknown", _parse, "error", "unknown mcpu 'notacpu'", args=({"kind": "llvm", "mcpu": "notacpu"},)),
    Case("mcpu-unknown-json", _parse, "error", "leave mcpu out", args=('{"kind": "llvm", "mcpu": "skylake-x"}',)),
    Case("mcpu-wrong-arch", _parse, "error", "unknown mcpu 'znver4' for aarch64",
         args=({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "znver4"},)),
    Case("mcpu-unknown-tvm-target", _tvm_target, "error", "unknown mcpu",
         args=({"kind": "llvm", "mcpu": "pentium9"},)),
    Case("mcpu-number", _parse, "error", "expected type 'str'", args=({"kind": "llvm", "mcpu": 3},)),
    Case("mtriple-unknown", _parse, "error", "unknown mtriple 'foo-bar-baz'",
         args=({"kind": "llvm", "mtriple": "foo-bar-baz"},)),
    Case("mattr-unknown-feature", _parse, "error", "unknown CPU feature(s) foobar",
         args=({"kind": "llvm", "mattr": ["+avx2", "+foobar"]},)),
    Case("mattr-unknown-aarch64", _parse, "error", "unknown CPU feature(s) avx2 in mattr for aarch64",
         args=({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+avx2"]},)),
    Case("mattr-text", _parse, "error", "mattr must be a list", args=({"kind": "llvm", "mattr": "+avx2,+fma"},)),
    Case("mattr-no-sign", _parse, "error", "must read", args=({"kind": "llvm", "mattr": ["avx2"]},)),
    Case("mattr-unknown-tvm-target", _tvm_target, "error", "unknown CPU feature(s) foobar",
         args=({"kind": "llvm", "mattr": ["+foobar"]},)),
    Case("ok-mattr-disable", _parse, "ok", args=({"kind": "llvm", "mattr": ["-avx512f"]},)),
    Case("option-unknown", _parse, "error", "Unknown config option 'cpu'", args=({"kind": "llvm", "cpu": "x"},)),
    Case("name-unknown", _parse, "error", "target kind 'cuda' is not supported", args=("cuda",)),
    Case("name-empty", _parse, "error", "unknown target ''", args=("",)),
    Case("type-int", _parse, "error", "got int", args=(3,)),
    Case("type-list", _parse, "error", "got list", args=(["llvm"],)),
    Case("type-bytes", _parse, "error", "got bytes", args=(b"llvm",)),
    Case("compile-cuda", _compile, "error", "CPU kernels only", args=("cuda",)),
    Case("compile-unknown-mcpu", _compile, "error", "unknown mcpu", args=('{"kind": "llvm", "mcpu": "m1"}',)),
    cli_case("cli-json-truncated", COMPILE + ["--target", literal('{"kind": "llvm"')], "target JSON is malformed"),
    cli_case("cli-json-garbage", COMPILE + ["--target", literal("{kind: llvm}")], "target JSON is malformed"),
    cli_case("cli-name-cuda", COMPILE + ["--target", "cuda"], "CPU kernels only"),
    cli_case("cli-json-cuda", COMPILE + ["--target", literal('{"kind": "cuda"}')], "CPU kernels only"),
    cli_case("cli-mcpu-unknown", COMPILE + ["--target", literal('{"kind": "llvm", "mcpu": "notacpu"}')],
             "unknown mcpu"),
    cli_case("cli-mtriple-unknown", COMPILE + ["--target", literal('{"kind": "llvm", "mtriple": "x-y-z"}')],
             "unknown mtriple"),
    cli_case("cli-empty", COMPILE + ["--target", ""], "unknown target ''"),
    cli_case("cli-list", COMPILE + ["--target", literal('["llvm"]')], "unknown target"),
    cli_case("cli-tune-cuda", ["tune", "{onnx}", "--shape", "input=1,1,8,8", "--plan", "w2a2", "--key", "k",
                               "--records", "{scratch}/r.jsonl", "--target", "cuda"], "CPU kernels only"),
    cli_case("cli-demo-opencl", ["demo", "--target", literal('{"kind": "opencl"}'), "-o", "{scratch}/demo"],
             "CPU kernels only"),
]


outcomes, test_case = corpus_tests(CASES, prepare=save_digits_module)
