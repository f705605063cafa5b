"""Running a model where it cannot run, and ``tvm_mp.load`` of damaged or wrong artifact directories.

Class: a model for another machine (aarch64, Cortex-M, CUDA, a CPU with features this one lacks) loads and runs
its ``reference`` here, and ``run`` says where to run it; a missing, cut, garbled or foreign file is one line naming
it -- and never crashes the process (a truncated ``model.so`` used to end in SIGBUS inside ``dlopen``).
"""

import json
import struct

import numpy as np

from ._corpus import Case, corpus_tests
from ._models import artifact_copy, digits_module, exact, loaded, samples, save_digits_module


def _target_json(name_or_dict):
    from tvm_mp.targets import parse

    if isinstance(name_or_dict, dict):
        return json.dumps({"name": "custom", "tvm": name_or_dict})
    return json.dumps(parse(name_or_dict).to_json())


def _elsewhere(art, cid, target, drop_so=False, method="run"):
    """The artifact with target.json rewritten to ``target``: loads; ``reference`` equals the host model's;
    ``run`` is the outcome of the case."""
    import tvm_mp

    d = artifact_copy(art, cid)
    (d / "target.json").write_text(_target_json(target))
    if drop_so:
        (d / "model.so").unlink()
    model = tvm_mp.load(d)
    x = samples(art)
    exact(model.reference(x), loaded(art).reference(x))
    return np.shape(getattr(model, method)(x))


def _compiled_for(art, target):
    """A real compile for ``target`` (no export): reference works, run refuses."""
    import tvm_mp

    mod = digits_module(art)
    model = tvm_mp.compile(mod, plan=tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(8, 8)),
                           calibration=[np.load(art.calib_npy)], target=target)
    x = samples(art)
    exact(model.reference(x), loaded(art).reference(x))
    model.run(x)


def _damaged(art, cid, edit, *args):
    """``tvm_mp.load`` of the artifact after ``edit(directory, *args)``, then run (if it loads)."""
    import tvm_mp

    d = artifact_copy(art, cid)
    edit(d, *args)
    model = tvm_mp.load(d)
    return np.shape(model.run(samples(art)))


# edits (module level: cases must pickle) ----------------------------------------------------------------------

def truncate(d, name, keep):
    data = (d / name).read_bytes()
    (d / name).write_bytes(data[: int(len(data) * keep)])


def write(d, name, text):
    (d / name).write_text(text)


def write_bytes(d, name, data):
    (d / name).write_bytes(data)


def remove(d, name):
    (d / name).unlink()


def replace_by_dir(d, name):
    (d / name).unlink()
    (d / name).mkdir()


def patch_elf_machine(d, machine):
    data = bytearray((d / "model.so").read_bytes())
    struct.pack_into("<H", data, 18, machine)
    (d / "model.so").write_bytes(bytes(data))


def flip_elf_class(d):
    data = bytearray((d / "model.so").read_bytes())
    data[4] = 1  # 32-bit
    (d / "model.so").write_bytes(bytes(data))


def inputs_shapes(d, shapes):
    (d / "inputs.json").write_text(json.dumps({"shapes": shapes}))


def _intact_copy(art):
    import tvm_mp

    d = artifact_copy(art, "intact-copy")
    model = tvm_mp.load(d)
    x = samples(art)
    exact(model.run(x), model.reference(x))
    exact(model.run(x), loaded(art).run(x))
    return x.shape


def _load_path(art, how):
    import tvm_mp

    paths = {"missing": art.root / "no-such-artifact", "file": art.calib_npy, "none": None, "int": 7,
             "empty-dir": art.scratch("empty-artifact-dir"), "onnx": art.onnx, "empty-string": ""}
    tvm_mp.load(paths[how])


#: No CPU has both: AMX is Intel's, SSE4a AMD's. So code built for this target cannot run on any one machine.
_NO_SUCH_CPU = {"kind": "llvm", "mattr": ["+amx-tile", "+sse4a"]}


def _foreign_cpu(art):
    """target.json claims CPU features this machine lacks: load skips model.so (it could fault with SIGILL), the
    reference runs, run refuses naming the missing features."""
    import tvm_mp

    d = artifact_copy(art, "foreign-cpu")
    (d / "target.json").write_text(_target_json(_NO_SUCH_CPU))
    model = tvm_mp.load(d)
    x = samples(art)
    exact(model.reference(x), loaded(art).reference(x))
    model.run(x)


CASES = [
    # a model for another machine: reference here, run refuses with where to run it
    Case("target-aarch64-run", _elsewhere, "error", "built for aarch64", args=("aarch64-run", "aarch64")),
    Case("target-aarch64-reference", _elsewhere, "ok", args=("aarch64-ref", "aarch64", False, "reference")),
    Case("target-cortex-m4-run", _elsewhere, "error", "cortex-m4", args=("m4-run", "cortex-m4", True)),
    Case("target-cortex-m7-reference", _elsewhere, "ok", args=("m7-ref", "cortex-m7", True, "reference")),
    Case("target-cuda-run", _elsewhere, "error", "cuda", args=("cuda-run", {"kind": "cuda"})),
    Case("target-foreign-cpu-run", _foreign_cpu, "error", "lacks"),
    Case("compiled-for-cuda-run", _compiled_for, "error", "cuda", args=('{"kind": "cuda"}',)),
    # model.so that would crash or cannot run here
    Case("model-so-truncated-half", _damaged, "error", "truncated", args=("so-half", truncate, "model.so", 0.5)),
    Case("model-so-truncated-tail", _damaged, "error", "truncated", args=("so-tail", truncate, "model.so", 0.98)),
    Case("model-so-header-only", _damaged, "error", "truncated", args=("so-head", truncate, "model.so", 0.001)),
    Case("model-so-empty", _damaged, "error", "model.so", args=("so-empty", write_bytes, "model.so", b"")),
    Case("model-so-text", _damaged, "error", "not a shared library",
         args=("so-text", write_bytes, "model.so", b"not a library at all, just text\n" * 8)),
    Case("model-so-aarch64", _damaged, "error", "built for aarch64", args=("so-arm", patch_elf_machine, 183)),
    Case("model-so-32-bit", _damaged, "error", "64-bit", args=("so-32", flip_elf_class)),
    Case("model-so-directory", _damaged, "error", "model.so missing", args=("so-dir", replace_by_dir, "model.so")),
    Case("model-so-missing", _damaged, "error", "model.so missing", args=("so-missing", remove, "model.so")),
    # the JSON files
    Case("report-json-garbage", _damaged, "error", "report.json", args=("rep-garbage", write, "report.json", "{oops")),
    Case("report-json-list", _damaged, "error", "report.json", args=("rep-list", write, "report.json", "[1, 2]")),
    Case("report-json-unknown-field", _damaged, "error", "report.json",
         args=("rep-field", write, "report.json", '{"layers": [], "memory_kb": 1, "colour": "red"}')),
    Case("target-json-garbage", _damaged, "error", "target.json", args=("tgt-garbage", write, "target.json", "{{")),
    Case("target-json-list", _damaged, "error", "target.json", args=("tgt-list", write, "target.json", "[]")),
    Case("target-json-unknown-kind", _damaged, "error", "target.json",
         args=("tgt-kind", write, "target.json", '{"name": "x", "tvm": {"kind": "tpu9000"}}')),
    Case("plan-json-garbage", _damaged, "error", "plan.json", args=("plan-garbage", write, "plan.json", "nope")),
    Case("quantized-json-truncated", _damaged, "error", "quantized.json",
         args=("q-trunc", truncate, "quantized.json", 0.5)),
    Case("quantized-json-empty-object", _damaged, "error", "quantized.json",
         args=("q-empty", write, "quantized.json", "{}")),
    Case("inputs-json-garbage", _damaged, "error", "inputs.json",
         args=("in-garbage", write, "inputs.json", '{"shapes": 3}')),
    Case("inputs-json-other-shape", _damaged, "error", "inputs.json",
         args=("in-shape", inputs_shapes, [[1, 1, 9, 9]])),
    Case("plan-json-missing", _damaged, "error", "plan.json missing", args=("plan-missing", remove, "plan.json")),
    Case("report-txt-missing-is-fine", _damaged, "ok", args=("txt-missing", remove, "report.txt")),
    # the directory itself
    Case("load-missing-directory", _load_path, "error", "does not exist", args=("missing",)),
    Case("load-a-file", _load_path, "error", "it is a file", args=("file",)),
    Case("load-the-onnx-file", _load_path, "error", "it is a file", args=("onnx",)),
    Case("load-empty-directory", _load_path, "error", "not a tvm-mp artifact", args=("empty-dir",)),
    Case("load-none", _load_path, "error", "path of an artifact directory", args=("none",)),
    Case("load-int", _load_path, "error", "path of an artifact directory", args=("int",)),
    Case("load-empty-string", _load_path, "error", "path of an artifact directory", args=("empty-string",)),
    Case("load-intact-copy", _intact_copy, "ok"),
]


outcomes, test_case = corpus_tests(CASES, prepare=save_digits_module)
