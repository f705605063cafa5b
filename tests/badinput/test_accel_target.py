"""Bad accelerator targets through the API and the CLI: hardware descriptions are checked when the target is parsed
(one line naming the field and the fix), and a damaged ``accel/`` part of an artifact is refused by ``load``."""

import json

from ._corpus import Case, cli_case, corpus_tests
from ._helpers import file_cli_case, literal
from ._models import digits_module, save_digits_module


def _parse(art, spec):
    from tvm_mp.targets import parse

    t = parse(spec)
    assert t.kind == "accel" and t.hardware is not None
    return str(t)


def _default_cfg() -> dict:
    from tvm_mp.accel.hardware import HardwareConfig

    return HardwareConfig.default().to_dict()


def _with(**changes) -> dict:
    cfg = _default_cfg()
    cfg.update(changes)
    return cfg


def _parse_changed(art, changes):
    return _parse(art, {"kind": "accel", "config": _with(**changes)})


def _offloaded_on_cpu(art):
    import tvm_mp
    from tvm_mp.driver import compile_offloaded

    mod = digits_module(art)
    compile_offloaded(mod, tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(4, 4)), [], target="host")


def _damaged_accel_artifact(art):
    import numpy as np

    import tvm_mp

    mod = digits_module(art)
    x = np.load(art.calib_npy)[:1]
    model = tvm_mp.compile(mod, plan=tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(4, 4)), target="accel",
                           calibration=[np.load(art.calib_npy)])
    out = model.export(art.scratch("accel-damaged") / "art")
    assert (tvm_mp.load(out).run(x) == model.run(x)).all()  # intact: round trip
    weights = out / "accel" / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:100])
    tvm_mp.load(out)


CASES = [
    Case("accel-name-ok", _parse, "ok", args=("accel",)),
    Case("accel-json-text-ok", _parse, "ok", args=('{"kind": "accel"}',)),
    Case("accel-config-missing-file", _parse, "error", "not found", args=({"kind": "accel", "config": "no.json"},)),
    Case("accel-config-bad-json-text", _parse, "error", "not valid JSON",
         args=({"kind": "accel", "config": "{nope"},)),
    Case("accel-config-wrong-type", _parse, "error", "hardware description file",
         args=({"kind": "accel", "config": 3.5},)),
    Case("accel-unknown-key", _parse, "error", "unknown key 'hardware'",
         args=({"kind": "accel", "hardware": "x.json"},)),
    Case("accel-config-lacks-field", _parse, "error", "lacks 'dram'",
         args=({"kind": "accel", "config": {k: v for k, v in _default_cfg().items() if k != "dram"}},)),
    Case("accel-bits-3", _parse_changed, "error", "remove 3", args=({"supported_bits": [8, 3]},)),
    Case("accel-clock-zero", _parse_changed, "error", "clock_mhz", args=({"clock_mhz": 0},)),
    Case("accel-offload-on-cpu", _offloaded_on_cpu, "error", "compile_offloaded is tvm_mp.compile"),
    Case("accel-damaged-weights", _damaged_accel_artifact, "error", "damaged", timeout_s=240.0),
    file_cli_case("cli-accel-bad-config", {"bad.json": {"name": "x"}},
                  ["compile", "{onnx}", "--shape", "input=1,1,8,8", "--plan", "w4a4", "--calibration", "digits",
                   "--target", '{{"kind": "accel", "config": "{scratch}/bad.json"}}', "-o", "{scratch}/out"],
                  "lacks 'clock_mhz'"),
    cli_case("cli-accel-unknown-key", ["compile", "{onnx}", "--shape", "input=1,1,8,8", "--plan", "w4a4",
                                       "--calibration", "digits", "--target",
                                       literal(json.dumps({"kind": "accel", "x": 1})), "-o", "{scratch}/out"],
             "unknown key 'x'"),
]


outcomes, test_case = corpus_tests(CASES, prepare=save_digits_module)
