"""The compile driver: every entry point builds the same kernels; the default target is this machine; artifacts load
back in a fresh process; plan reports carry costs."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from dataclasses import replace

import numpy as np
import pytest
import tvm

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.cost_models.analytical import AnalyticalModel
from tvm_mp.cost_models.base import Workload
from tvm_mp.driver import compile_offloaded, epilogues, quantize
from tvm_mp.layers import list_layers
from tvm_mp.model import Report
from tvm_mp.schedules import kernels
from tvm_mp.schedules.registry import KernelConfig
from tvm_mp.schedules.tuning import TuningDatabase
from tvm_mp.search.adaptive import compile_adaptive
from tvm_mp.targets import parse

from ._nets import residual_net

PLANS = [PrecisionPlan.uniform(residual_net(0, last_channels=4), Precision(8, 8)),
         PrecisionPlan({"conv2d_0": Precision(8, 8), "conv2d_1": Precision(4, 4), "conv2d_2": Precision(2, 2),
                        "conv2d_3": Precision(1, 1), "dense_0": Precision(8, 8)})]


def kernels_of(module: tvm.IRModule) -> dict[str, str]:
    """Layer kernel name -> its PrimFunc's TVMScript, with the function's own name replaced by ``K`` (an artifact
    with several operating points renames kernels that differ between points)."""
    out = {}
    for gv, func in module.functions_items():
        name = gv.name_hint
        if isinstance(func, tvm.tirx.PrimFunc) and "_kernel" in name:
            out[name] = func.script().replace(name, "K")
    return out


@pytest.fixture(scope="module")
def tuned_db(residual, tmp_path_factory):
    """A database whose entry for conv2d_0 at w8a8 differs from the default knobs (so a build that ignores the
    database is caught)."""
    target = parse("host")
    info = {i.name: i for i in list_layers(residual)}["conv2d_0"]
    work = kernels.conv_workload(Precision(8, 8).resolved_kind, 8, 8, info.input_shape, info.weight_shape, info.params)
    default = kernels.conv2d_config(work, target.tvm_target, database=False)
    tuned = KernelConfig("im2col" if default.algorithm != "im2col" else "direct", lanes=default.lanes, oc_block=2,
                         p_unroll=2, parallel=False)
    db = TuningDatabase(tmp_path_factory.mktemp("db") / "db.json")
    db.put(work, target.tvm_target, tuned, 1.0)
    db.save()
    return db, work, tuned


def test_compile_adaptive_and_offload_build_the_same_kernels(residual, residual_calib, tuned_db):
    db, work, tuned = tuned_db
    plain = tvm_mp.compile(residual, plan=PLANS[1], calibration=residual_calib, database=db)
    assert kernels.conv2d_config(work, parse("host").tvm_target, db) == tuned
    ours = kernels_of(plain.lowered)
    assert "tvm_mp_conv2d_0_kernel" in ours
    assert {r.name: r.schedule_source for r in plain.report.layers}["conv2d_0"] == "tuned (db.json)"
    defaults = tvm_mp.compile(residual, plan=PLANS[1], calibration=residual_calib, database=False)
    assert {r.schedule_source for r in defaults.report.layers} == {"default"}
    without_db = kernels_of(defaults.lowered)
    assert without_db["tvm_mp_conv2d_0_kernel"] != ours["tvm_mp_conv2d_0_kernel"]  # the tuned config is used
    adaptive = compile_adaptive(residual, PLANS, calibration=residual_calib, database=db)
    merged = kernels_of(adaptive.module)
    for name, script in ours.items():  # every kernel of the stand-alone compile is in the merged artifact
        assert script in merged.values(), name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        off = compile_offloaded(residual, PLANS[1], residual_calib, accel_layers=[], database=db)
    assert not off.accel.kernels  # nothing on the accelerator: the host kernels of a plain compile
    assert kernels_of(off.lowered) == ours
    x = residual_calib[0]
    np.testing.assert_array_equal(off.run(x), plain.run(x))
    point = next(p for p in adaptive.points if p.plan == PLANS[1])
    np.testing.assert_array_equal(adaptive.run(residual_calib[1], point=point), plain.run(residual_calib[1]))


def test_budget_compile_hands_ranges_and_weights_to_the_driver(residual, residual_calib):
    """The budget path builds what a plan compile of its chosen plan builds (same kernels, same numbers)."""
    model = tvm_mp.compile(residual, budget=tvm_mp.Budget(memory_kb=2.0), calibration=residual_calib)
    again = tvm_mp.compile(residual, plan=model.plan, calibration=residual_calib)
    assert kernels_of(model.lowered) == kernels_of(again.lowered)
    np.testing.assert_array_equal(model.run(residual_calib[0]), again.run(residual_calib[0]))
    assert model.report.latency_ms == pytest.approx(again.report.latency_ms)


def test_default_target_is_this_machine(residual, residual_calib):
    model = tvm_mp.compile(residual, plan=PLANS[0], calibration=residual_calib)
    host = parse("host")
    assert model.target == host and model.target.mcpu == host.mcpu and model.target.is_host
    assert parse(None) == host


def vnni_used(lowered: tvm.IRModule) -> bool:
    return any("vpdpbusd" in script for script in kernels_of(lowered).values())


def test_vnni_target_lowers_to_vnni_kernels(residual, residual_calib):
    """A CPU with AVX-512 VNNI gets the vpdpbusd kernels for packed 8-bit layers (lowered, not run)."""
    quantized = quantize(residual, PLANS[0], calibration=residual_calib)
    from tvm_mp.driver import lower

    assert vnni_used(lower(quantized, parse({"kind": "llvm", "mcpu": "cascadelake"})))
    assert not vnni_used(lower(quantized, parse({"kind": "llvm", "mcpu": "haswell"})))


@pytest.mark.skipif(not parse("host").has("avx512vnni"), reason="this machine's CPU has no AVX-512 VNNI")
def test_default_target_uses_vnni_on_a_vnni_host(residual, residual_calib):
    model = tvm_mp.compile(residual, plan=PLANS[0], calibration=residual_calib)
    assert vnni_used(model.lowered)
    np.testing.assert_array_equal(model.run(residual_calib[0]), model.reference(residual_calib[0]))


def test_plan_report_has_modelled_latency_and_energy(residual, residual_calib):
    """On the host the default is the whole-model predictor: latency of the whole inference (layers + fixed terms),
    energy from the analytical CPU model; both labelled modelled, the model named."""
    model = tvm_mp.compile(residual, plan=PLANS[1], calibration=residual_calib)
    rep = model.report
    assert rep.latency_ms > 0 and rep.energy_uj > 0
    assert rep.latency_basis == "modelled" and rep.energy_basis == "modelled"
    assert rep.cost_model.startswith("WholeModel") and "energy: analytical CPU model" in rep.cost_model
    assert all(r.latency_ms > 0 and r.energy_uj > 0 for r in rep.layers)
    assert rep.fixed_latency_ms is not None
    assert rep.latency_ms == pytest.approx(sum(r.latency_ms for r in rep.layers) + rep.fixed_latency_ms)
    assert "modelled" in str(rep) and "WholeModel" in str(rep) and "fixed" in str(rep)
    analytical = AnalyticalModel().predict(
        [Workload.from_layer(i, PLANS[1][i.name], epilogue=epilogues(model.quantized_module).get(i.name, "float"))
         for i in list_layers(residual) if i.name in PLANS[1]])
    assert rep.energy_uj == pytest.approx(float(np.sum(analytical.energy_uj)))


def test_user_database_is_read_by_default(residual, residual_calib, tmp_path, monkeypatch):
    """What `tvm-mp tune` writes (the user database, keyed by the target) is what the next compile builds, conv and
    dense alike; each report row says which knobs its kernel has and where they came from."""
    monkeypatch.setenv("TVM_MP_HOME", str(tmp_path))
    target = parse("host")
    infos = {i.name: i for i in list_layers(residual)}
    conv = kernels.conv_workload("packed", 4, 4, infos["conv2d_1"].input_shape, infos["conv2d_1"].weight_shape,
                                 infos["conv2d_1"].params)
    dense = kernels.dense_workload("packed", 8, 8, infos["dense_0"].input_shape, infos["dense_0"].weight_shape)
    forced = {}
    user = TuningDatabase(target.user_database)
    for name, work in (("conv2d_1", conv), ("dense_0", dense)):
        default = kernels.conv2d_config(work, target, database=False)
        forced[name] = replace(default, oc_block=1 if default.oc_block != 1 else 2, p_unroll=4, parallel=False)
        user.put(work, target, forced[name], 1.0)
    user.save()
    model = tvm_mp.compile(residual, plan=PLANS[1], calibration=residual_calib, cost_model="analytical")
    rows = {r.name: r for r in model.report.layers}
    for name, config in forced.items():
        assert rows[name].schedule == config.to_dict() and rows[name].schedule_source == "tuned (user database)"
    assert {rows[n].schedule_source for n in rows if n not in forced} <= {"default", "tuned (shipped)"}
    assert "2 tuned (user database)" in str(model.report) and model.report.cost_model == "AnalyticalModel"
    assert Report.from_dict(json.loads(json.dumps(model.report.to_dict()))) == model.report
    for x in residual_calib:
        np.testing.assert_array_equal(model.run(x), model.reference(x))


LOAD_SCRIPT = """
import json, sys
import numpy as np
import tvm_mp
model = tvm_mp.load(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], model.run(x))
np.save(sys.argv[4], model.reference(x))
print(json.dumps({"plan": model.plan.to_json(), "latency_ms": model.report.latency_ms, "target": model.target.name}))
"""


def test_load_round_trip_in_a_fresh_process(residual, residual_calib, tmp_path):
    model = tvm_mp.compile(residual, plan=PLANS[1], calibration=residual_calib)
    out = model.export(tmp_path / "artifact")
    x = np.concatenate(residual_calib)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(out), str(tmp_path / "x.npy"),
                           str(tmp_path / "run.npy"), str(tmp_path / "ref.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert PrecisionPlan.from_json(info["plan"]) == model.plan and info["target"] == "host"
    assert info["latency_ms"] == pytest.approx(model.report.latency_ms)
    np.testing.assert_array_equal(np.load(tmp_path / "run.npy"), model.run(x))
    np.testing.assert_array_equal(np.load(tmp_path / "ref.npy"), model.reference(x))


def test_load_refuses_what_is_not_an_artifact(tmp_path):
    with pytest.raises(tvm_mp.Error, match="not a directory"):
        tvm_mp.load(tmp_path / "missing")
    (tmp_path / "plan.json").write_text("{}")
    with pytest.raises(tvm_mp.Error, match="model.so.*missing"):
        tvm_mp.load(tmp_path)


def _conv1d_after_conv2d(with_conv2d: bool = True) -> tvm.IRModule:
    """conv2d (optional) -> reshape -> conv1d -> matmul by a run-time input: 0 or 1 layers, 2 unquantizable ops."""
    from tvm import relax

    from tvm_mp import _tvm

    rng = np.random.default_rng(0)
    x = relax.Var("x", relax.TensorType((1, 4, 4, 4), "float32"))
    w = relax.Var("w", relax.TensorType((4, 3), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x, w]):
        with bb.dataflow():
            h = x
            if with_conv2d:
                h = bb.emit(relax.op.nn.conv2d(x, _tvm.const(rng.normal(size=(4, 4, 1, 1)).astype("float32"))))
            r = bb.emit(relax.op.reshape(h, (1, 4, 16)))
            c = bb.emit(relax.op.nn.conv1d(r, _tvm.const(rng.normal(size=(4, 4, 1)).astype("float32"))))
            m = bb.emit(relax.op.reshape(c, (16, 4)))
            out = bb.emit_output(relax.op.matmul(m, w))
        bb.emit_func_output(out)
    mod = bb.get()
    mod["main"] = mod["main"].with_attr("num_input", 2)
    return mod


def test_unquantizable_ops_are_one_warning_with_each_reason():
    from tvm_mp.driver import warn_unquantizable

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = warn_unquantizable(_conv1d_after_conv2d())
    assert [u.name for u in found] == ["float_conv1d_0", "float_matmul_0"]
    (message,) = [str(w.message) for w in caught]
    lines = message.splitlines()
    assert lines[0] == ("tvm-mp cannot quantize 2 layers of the model; they run unquantized, as TVM builds them:")
    assert lines[1] == f"  {found[0].summary}" and "a 1-D convolution" in lines[1]
    assert lines[2].startswith("  float_matmul_0 (matmul, input (16, 4), weight (4, 3)): its weight is not a "
                               "constant (graph input 'w', given at run time)")


def test_no_quantizable_layer_is_said_in_the_warning():
    from tvm import relax

    from tvm_mp.driver import warn_unquantizable

    with pytest.warns(UserWarning, match=r"2 layers of the model \(it has no layer tvm-mp can quantize: the whole "
                                         r"model runs unquantized\)"):
        warn_unquantizable(_conv1d_after_conv2d(with_conv2d=False))
    x = relax.Var("x", relax.TensorType((1, 4), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.relu(x))
        bb.emit_func_output(out)
    with pytest.warns(UserWarning, match="the model has no conv or matmul layer: nothing to quantize"):
        assert warn_unquantizable(bb.get()) == ()


def test_a_plan_naming_an_unquantizable_op_is_refused_with_the_reason():
    from tvm_mp.driver import check_plan
    from tvm_mp.errors import PlanError

    mod = _conv1d_after_conv2d()
    with pytest.raises(PlanError, match=r"^layer 'float_conv1d_0' \(conv1d\) in the plan cannot be quantized: a 1-D "
                                        r"convolution: .*; remove it from the plan$"):
        check_plan(mod, PrecisionPlan({"conv2d_0": Precision(4, 4), "float_conv1d_0": Precision(4, 4)}))
    assert check_plan(mod, PrecisionPlan({"conv2d_0": Precision(4, 4)}))
