"""The standalone aarch64 bundle (no TVM runtime) that ``export`` writes for an aarch64 target: built with the cross
compiler by its own Makefile, run under qemu-aarch64, bit-exact against ``CompiledModel.reference``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.datasets import load_digits_split
from tvm_mp.models import digits_cnn_path
from tvm_mp.testing import qemu

pytestmark = pytest.mark.external


def test_cli_aarch64_writes_so_and_bundle_exact_under_qemu(arm_tools, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "tvm_mp.cli", "compile", str(digits_cnn_path()), "--shape",
                           "input=1,1,8,8", "--plan", "w4a4", "--calibration", "digits", "--target", "aarch64",
                           "--emulate", "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "aarch64" in subprocess.run(["file", str(out / "model.so")], capture_output=True, text=True).stdout
    bundle = out / "bundle"
    for name in ("kernels.o", "tvm_mp_model.c", "tvm_mp_model.h", "weights.bin", "Makefile", "README.txt"):
        assert (bundle / name).is_file(), name
    header = (bundle / "tvm_mp_model.h").read_text()
    assert "int tvm_mp_init(void);" in header and "int tvm_mp_run(const float *input, float *output);" in header
    model = tvm_mp.load(out)  # an aarch64 artifact: reference runs here, run refuses
    with pytest.raises(tvm_mp.Error, match="not for this machine"):
        model.run(np.zeros((1, 1, 8, 8), np.float32))
    digits = load_digits_split()
    for x in digits.x_test[:3]:
        run = qemu.run_bundle(bundle, x[None], (1, 10))
        np.testing.assert_array_equal(run.outputs[0], model.reference(x[None]))
    # --emulate: one counted inference of the bundle in the report, labelled as emulated instructions
    info = json.loads((bundle / "bundle.json").read_text())
    d = model.report.deployment
    assert d["equals_reference"] and d["instructions_basis"].startswith("emulated instructions")
    assert 1000 < d["instructions"] < 50 * 452864 and set(d["kernel_instructions"]) == set(info["kernels"])
    assert 0.8 * d["instructions"] < sum(d["kernel_instructions"].values()) <= d["instructions"]
    assert d["weight_bytes"] == (bundle / "weights.bin").stat().st_size and d["activation_bytes"] > 0
    line = next(ln for ln in proc.stdout.splitlines() if "emulated instructions" in ln)
    assert " ms" not in line


def test_builder_model_bundle_exact_under_qemu(arm_tools, tmp_path):
    from tvm_mp.models.builders import BUILDERS

    builder = BUILDERS["ds_cnn"]
    mod = tvm_mp.load_onnx(builder.build(0), shapes={builder.input_name: builder.input_shape})
    names = [layer.name for layer in tvm_mp.list_layers(mod)]
    rng = np.random.default_rng(0)
    calib = [rng.normal(0, 1, builder.input_shape).astype(np.float32) for _ in range(2)]
    x = rng.normal(0, 1, builder.input_shape).astype(np.float32)
    # every layer planned, 1 to 8 bits (float edges: dequantize, float pooling): bit-exact
    mixed = PrecisionPlan({n: Precision(*[(2, 4), (1, 2), (4, 4), (8, 8)][i % 4]) for i, n in enumerate(names)})
    cm = tvm_mp.compile(mod, plan=mixed, calibration=calib, target="aarch64")
    cm.export(tmp_path / "mixed")
    run = qemu.run_bundle(tmp_path / "mixed" / "bundle", x, cm.reference(x).shape)
    np.testing.assert_array_equal(run.outputs[0], cm.reference(x))
    # the last layer left in fp32 (TVM's float kernel in the bundle): its sum order differs from NumPy's
    cm = tvm_mp.compile(mod, plan=PrecisionPlan({n: mixed[n] for n in names[:-1]}), calibration=calib,
                        target="aarch64")
    assert cm.report.fp32_layers == (names[-1],)
    cm.export(tmp_path / "fp32")
    run = qemu.run_bundle(tmp_path / "fp32" / "bundle", x, cm.reference(x).shape)
    np.testing.assert_allclose(run.outputs[0], cm.reference(x), rtol=1e-5, atol=1e-5)


def test_missing_cross_compiler_or_emulator_is_one_line(tmp_path, monkeypatch):
    from tvm_mp import targets
    from tvm_mp.deploy import aarch64, emulate

    mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
    cm = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(8, 8)),
                        calibration=[load_digits_split().x_test[:8]], target="aarch64")
    monkeypatch.setattr(emulate.shutil, "which", lambda tool: None if tool == emulate.QEMU else "/usr/bin/" + tool)
    with pytest.raises(tvm_mp.errors.ToolchainError, match=r"qemu-aarch64 not found.*apt-get install qemu-user$"):
        aarch64.measure(cm, np.zeros((1, 1, 8, 8), np.float32))
    monkeypatch.setattr(targets.shutil, "which", lambda *a, **k: None)
    with pytest.raises(tvm_mp.errors.ToolchainError) as info:
        cm.export(tmp_path / "out")
    msg = str(info.value)
    assert "\n" not in msg and "apt-get install gcc-aarch64-linux-gnu" in msg
    assert (tmp_path / "out" / "bundle" / "kernels.o").is_file()  # the bundle needs no cross linker to be written
