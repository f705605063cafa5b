"""Files tvm-mp reads, damaged in the ways files get damaged: calibration arrays, records, tuning databases,
cost-model files, artifact directories for ``tvm-mp report`` / ``tvm_mp.load``, ONNX models. Every one is a
one-line error that names the file (or is read correctly)."""

import io
import json
import shutil

import numpy as np

from ._corpus import Case, cli_case, corpus_tests
from ._helpers import file_cli_case, write
from ._models import digits_module, save_digits_module

# -- calibration --------------------------------------------------------------------------------------------------


def _samples(kind: str, art):
    good = np.load(art.calib_npy)
    return {
        "uint8": (good * 16).astype(np.uint8),
        "zero-d": np.array(3.0, np.float32),
        "wrong-shape": good[:, 0],
        "nan": np.where(np.arange(good.size).reshape(good.shape) == 5, np.nan, good).astype(np.float32),
        "empty": good[:0],
        "strings": np.array(["a", "b"]),
        "complex": good.astype(np.complex64),
    }[kind]


def _calibration_file(art, name, kind):
    """Write a calibration file of ``kind`` and read it as ``--calibration`` does (checked against the model)."""
    from tvm_mp.cli import _calibration

    path = art.scratch("calibration") / name
    good = np.load(art.calib_npy)
    if kind == "npz-two":
        np.savez(path, a=good, b=good)
    elif kind == "npz-one":
        np.savez(path, samples=good)
    elif kind == "npz-named":
        np.savez(path, input=good)
    elif kind == "pickled":
        np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    elif kind == "truncated":
        np.save(path, good)
        path.write_bytes(path.read_bytes()[:100])
    elif kind == "text":
        path.write_text("0.1, 0.2, 0.3\n")
    elif kind == "directory":
        path.mkdir(exist_ok=True)
    elif kind != "missing":
        np.save(path, _samples(kind, art))
    batches = _calibration(str(path), digits_module(art))
    total = sum(len(b["input"] if isinstance(b, dict) else b) for b in batches)
    assert total == len(good), (total, len(good))
    return total


def _calibrate_api(art, kind):
    import tvm_mp

    mod = digits_module(art)
    plan = tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(8, 8))
    return tvm_mp.compile(mod, plan=plan, calibration=[_samples(kind, art)])


# -- records, tuning databases, cost models -----------------------------------------------------------------------


def _records_store(art, name, content):
    from tvm_mp.measure.records import RecordStore

    return len(RecordStore(write(art.scratch("records") / name, content)).load())


def _tuning_db(art, name, content):
    from tvm_mp.schedules.tuning import TuningDatabase

    path = art.scratch("tuning") / name
    if content is not ...:
        write(path, content)
    return len(TuningDatabase.load(path).records)


def _tuning_db_arg(art, arg):
    from tvm_mp.schedules.tuning import TuningDatabase

    return TuningDatabase.load(arg)


def _compile_with_database(art, content):
    import tvm_mp

    mod = digits_module(art)
    plan = tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(8, 8))
    path = write(art.scratch("compile-db") / "db.json", content)
    return tvm_mp.compile(mod, plan=plan, calibration=[np.load(art.calib_npy)], database=path)


def _cost_model(art, name, content):
    from tvm_mp.cost_models.xgb import XGBCostModel

    path = art.scratch("cost-model") / name
    if content is not ...:
        write(path, content)
    return XGBCostModel.load(path).info


def _default_model_head(art):
    from importlib import resources

    text = resources.files("tvm_mp.cost_models").joinpath("default_model.json").read_text()
    return _cost_model(art, "head.json", text[:4000])


# -- artifact directories -----------------------------------------------------------------------------------------


def _damaged_copy(art, id, file, change):
    """A copy of the compiled artifact with ``file`` changed: ``change`` is new content, or a function of its
    JSON."""
    out = art.scratch(id) / "art"
    if not out.exists():
        shutil.copytree(art.compiled, out)
    if file is not None:
        if callable(change):
            data = json.loads((out / file).read_text())
            write(out / file, change(data))
        else:
            write(out / file, change)
    return out


def _report_cli(art, id, file, change):
    from tvm_mp.testing.isolate import _run_cli

    return _run_cli(["report", str(_damaged_copy(art, id, file, change))])


def _load_artifact(art, id, file, change):
    import tvm_mp

    model = tvm_mp.load(_damaged_copy(art, id, file, change))
    x = np.load(art.calib_npy)[:1]
    assert np.array_equal(model.run(x), model.reference(x))
    return len(model.report.layers)


def _drop(key):
    return _Edit("drop", key)


def _set(key, value):
    return _Edit("set", key, value)


class _Edit:
    """A picklable change of a report's JSON: drop or set a top-level key, or ``layers.0.key`` of its first row."""

    def __init__(self, op, key, value=None):
        self.op, self.key, self.value = op, key, value

    def __call__(self, data):
        target, key = data, self.key
        if key.startswith("layers.0."):
            target, key = data["layers"][0], key[len("layers.0."):]
        if self.op == "drop":
            del target[key]
        else:
            target[key] = self.value
        return data


def _report_case(id, file, change, match, expect="cli_error"):
    return Case(id, _report_cli, expect, match, args=(id, file, change))


def _load_case(id, file, change, match, expect="error"):
    return Case(id, _load_artifact, expect, match, args=(id, file, change))


# -- ONNX ---------------------------------------------------------------------------------------------------------


def _onnx(art, kind):
    import tvm_mp

    data = art.onnx.read_bytes()
    path = art.scratch("onnx") / f"{kind}.onnx"
    content = {"missing": ..., "directory": None, "empty": b"", "text": "ir_version: 8\ngraph {}\n",
               "truncated": data[: len(data) // 2], "random": bytes(np.random.default_rng(0).integers(0, 256, 4096,
                                                                                                       np.uint8)),
               "json": {"graph": {}}}[kind]
    if content is not ...:
        write(path, content)
    return tvm_mp.load_onnx(path, shapes={"input": (1, 1, 8, 8)})


def _onnx_arg(art, arg):
    import tvm_mp

    return tvm_mp.load_onnx(arg)


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


EVAL = ["cost-model", "eval", "--default-model", "--records"]
COMPILE = ["compile", "{onnx}", "--shape", "input=1,1,8,8", "--plan", "w8a8", "-o", "{scratch}/out", "--calibration"]
RECORD_LINE = '{"workload": {"op": "conv2d"}, "source": "host"'  # cut short: no closing brace, no newline

CASES = [
    # -- calibration: the --calibration reader ---------------------------------------------------------------------
    Case("calib-npy-uint8-ok", _calibration_file, "ok", args=("u8.npy", "uint8")),
    Case("calib-npz-one-array-ok", _calibration_file, "ok", args=("one.npz", "npz-one")),
    Case("calib-npz-named-ok", _calibration_file, "ok", args=("named.npz", "npz-named")),
    Case("calib-npz-two-arrays", _calibration_file, "error", "arrays ['a', 'b']", args=("two.npz", "npz-two")),
    Case("calib-zero-d", _calibration_file, "error", "0-d array", args=("zero_d.npy", "zero-d")),
    Case("calib-wrong-shape", _calibration_file, "error", "expected (batch, 1, 8, 8)",
         args=("shape.npy", "wrong-shape")),
    Case("calib-nan", _calibration_file, "error", "NaN", args=("nan.npy", "nan")),
    Case("calib-empty", _calibration_file, "error", "no samples", args=("empty.npy", "empty")),
    Case("calib-strings", _calibration_file, "error", "<U1 values", args=("str.npy", "strings")),
    Case("calib-complex", _calibration_file, "error", "complex64 values", args=("c.npy", "complex")),
    Case("calib-pickled", _calibration_file, "error", "cannot read", args=("obj.npy", "pickled")),
    Case("calib-truncated", _calibration_file, "error", "cannot read", args=("cut.npy", "truncated")),
    Case("calib-text", _calibration_file, "error", "cannot read", args=("text.npy", "text")),
    Case("calib-directory", _calibration_file, "error", "is a directory", args=("dir.npy", "directory")),
    Case("calib-missing", _calibration_file, "error", "not found", args=("none.npy", "missing")),
    Case("calib-api-complex", _calibrate_api, "error", "complex", args=("complex",)),
    Case("calib-api-zero-d", _calibrate_api, "error", "has shape ()", args=("zero-d",)),
    cli_case("cli-calib-directory", COMPILE + ["{scratch}"], "is a directory"),
    cli_case("cli-calib-missing", COMPILE + ["{scratch}/none.npy"], "not found"),
    file_cli_case("cli-calib-npz-strings", {"c.npz": _npz_bytes(input=np.array(["a", "b"]))},
                  COMPILE + ["{scratch}/c.npz"], "array 'input' holds <U1 values"),
    file_cli_case("cli-calib-zero-d", {"c.npy": _npy_bytes(np.float32(1))}, COMPILE + ["{scratch}/c.npy"], "0-d"),
    file_cli_case("cli-calib-empty", {"c.npy": _npy_bytes(np.zeros((0, 1, 8, 8), np.float32))},
                  COMPILE + ["{scratch}/c.npy"], "no samples"),
    cli_case("cli-calib-onnx-file", COMPILE + ["{onnx}"], "cannot read"),
    # -- records ----------------------------------------------------------------------------------------------------
    Case("records-store-directory", _records_store, "error", "is a directory", args=("dir", None)),
    Case("records-store-wrong-type", _records_store, "warn", "unreadable line",
         args=("r.jsonl", '[1, 2]\n"x"\n{}\n')),
    cli_case("cli-records-directory", EVAL + ["{scratch}"], "is a directory"),
    cli_case("cli-records-missing", EVAL + ["{scratch}/none.jsonl"], "collect some first"),
    cli_case("cli-train-records-directory", ["cost-model", "train", "--records", "{scratch}", "--out",
                                             "{scratch}/m.json"], "is a directory"),
    file_cli_case("cli-records-list", {"r.jsonl": "[1, 2, 3]\n"}, EVAL + ["{scratch}/r.jsonl"],
                  "not a records file"),
    file_cli_case("cli-records-truncated", {"r.jsonl": RECORD_LINE}, EVAL + ["{scratch}/r.jsonl"],
                  "partial last line"),
    file_cli_case("cli-records-binary", {"r.jsonl": bytes(range(256)) * 4}, EVAL + ["{scratch}/r.jsonl"],
                  "not a records file"),
    file_cli_case("cli-records-empty", {"r.jsonl": ""}, EVAL + ["{scratch}/r.jsonl"], "no usable records"),
    # -- tuning databases -------------------------------------------------------------------------------------------
    Case("db-missing-ok", _tuning_db, "ok", args=("none.json", ...)),
    Case("db-directory", _tuning_db, "error", "is a directory", args=("dir", None)),
    Case("db-list", _tuning_db, "error", "not a tuning database", args=("list.json", [1, 2])),
    Case("db-records-list", _tuning_db, "error", "without a records object",
         args=("rl.json", {"format": 1, "records": [1]})),
    Case("db-entries-wrong", _tuning_db, "error", "damaged",
         args=("bad.json", {"format": 1, "records": {"llvm|||": {"conv2d|w4a4": 3}}})),
    Case("db-latency-text", _tuning_db, "error", "damaged",
         args=("lat.json", {"format": 1, "records": {"llvm|||": {"k": {"config": {}, "latency_us": "fast"}}}})),
    Case("db-format-2", _tuning_db, "error", "format 2", args=("f2.json", {"format": 2, "records": {}})),
    Case("db-truncated", _tuning_db, "error", "not valid JSON", args=("cut.json", '{"format": 1, "records": {"ll')),
    Case("db-binary", _tuning_db, "error", "not valid JSON", args=("bin.json", bytes(range(256)))),
    Case("db-not-a-path", _tuning_db_arg, "error", "must be a file path", args=(3,)),
    Case("db-compile-wrong-type", _compile_with_database, "error", "not a tuning database", args=([],)),
    # -- cost-model files -------------------------------------------------------------------------------------------
    Case("cm-garbage", _cost_model, "error", "not valid JSON", args=("g.json", "garbage")),
    Case("cm-list", _cost_model, "error", "not a tvm-mp XGBoost cost model", args=("l.json", [1])),
    Case("cm-directory", _cost_model, "error", "Is a directory", args=("d", None)),
    Case("cm-missing", _cost_model, "error", "No such file", args=("none.json", ...)),
    Case("cm-binary", _cost_model, "error", "not a text (JSON) file", args=("b.json", bytes(range(128, 256)))),
    Case("cm-damaged", _cost_model, "error", "is damaged", args=("x.json", {"format": "tvm-mp-xgb-cost-model"})),
    Case("cm-truncated", _default_model_head, "error", "not valid JSON"),
    file_cli_case("cli-cm-garbage", {"m.json": "{]"}, ["cost-model", "eval", "--records",
                                                       "{scratch}/m.json", "--model", "{scratch}/m.json"],
                  "not a records file"),
    # -- artifact directories: tvm-mp report and tvm_mp.load --------------------------------------------------------
    _report_case("report-ok", None, None, "report:", expect="cli_ok"),
    _report_case("report-no-layers", "report.json", _drop("layers"), "no list of layers"),
    _report_case("report-row-missing-field", "report.json", _drop("layers.0.macs"), "'macs'"),
    _report_case("report-row-wrong-type", "report.json", _set("layers.0.macs", "many"),
                 "macs='many' is not a non-negative integer"),
    _report_case("report-total-wrong-type", "report.json", _set("memory_kb", [1]), "memory_kb=[1]"),
    _report_case("report-unknown-field", "report.json", _set("colour", "red"), "unknown field(s) colour"),
    _report_case("report-list", "report.json", [1, 2], "a list, not an object"),
    _report_case("report-truncated", "report.json", '{"layers": [', "not valid JSON"),
    _report_case("report-plan-garbage", "plan.json", b"\x00\x01", "not valid JSON"),
    _report_case("report-pareto-wrong", "pareto.json", [1, 2], "not what tvm-mp writes"),
    cli_case("report-empty-directory", ["report", "{scratch}"], "no report.json"),
    cli_case("report-a-file", ["report", "{onnx}"], "no report.json"),
    _load_case("load-ok", None, None, "", expect="ok"),
    _load_case("load-report-wrong-type", "report.json", _set("layers.0.energy_uj", "lots"), "energy_uj='lots'"),
    _load_case("load-report-missing-field", "report.json", _drop("layers"), "not a tvm-mp report"),
    _load_case("load-plan-bool", "plan.json", _Edit("set", "layers", {"conv2d_0": {"w_bits": True, "a_bits": 8}}),
               "is damaged"),
    # -- ONNX models ------------------------------------------------------------------------------------------------
    Case("onnx-missing", _onnx, "error", "not found", args=("missing",), error="ModelError"),
    Case("onnx-directory", _onnx, "error", "is a directory", args=("directory",), error="ModelError"),
    Case("onnx-empty", _onnx, "error", "no ONNX graph", args=("empty",), error="ModelError"),
    Case("onnx-text", _onnx, "error", "ONNX", args=("text",), error="ModelError"),
    Case("onnx-json", _onnx, "error", "ONNX", args=("json",), error="ModelError"),
    Case("onnx-truncated", _onnx, "error", "truncated", args=("truncated",), error="ModelError"),
    Case("onnx-random-bytes", _onnx, "error", "ONNX", args=("random",), error="ModelError"),
    Case("onnx-not-a-path", _onnx_arg, "error", "got int", args=(3,), error="ModelError"),
    cli_case("cli-onnx-directory", ["layers", "{scratch}"], "is a directory"),
    cli_case("cli-onnx-missing", ["layers", "{scratch}/none.onnx"], "not found"),
    file_cli_case("cli-onnx-empty", {"m.onnx": b""}, ["layers", "{scratch}/m.onnx"], "no ONNX graph"),
    file_cli_case("cli-onnx-text", {"m.onnx": "not a model"}, ["layers", "{scratch}/m.onnx"], "ONNX"),
]


outcomes, test_case = corpus_tests(CASES, prepare=save_digits_module)
