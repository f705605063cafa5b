"""``target="cortex-m4"`` / ``"cortex-m7"`` through ``tvm_mp.compile``: the driver's quantize phase, then C from
``emit_network`` (no TVM build); report figures from the emulated board; ``export`` writes the C bundle."""

from __future__ import annotations

import numpy as np
import pytest

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.datasets import calibration_batches, load_digits_split
from tvm_mp.errors import UnsupportedError
from tvm_mp.mcu import run_network
from tvm_mp.models import digits_cnn_path
from tvm_mp.targets import parse


@pytest.fixture(scope="module")
def digits():
    return tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})


def test_cortex_m_targets_parse():
    for name in ("cortex-m4", "cortex-m7"):
        t = parse(name)
        assert t.kind == "cortex-m" and not t.builds_with_tvm and not t.is_host and t.name == name
        assert parse(t.to_json()).kind == "cortex-m"
    assert parse("aarch64").builds_with_tvm


def test_fp32_layer_on_cortex_m_is_one_line(digits):
    names = [layer.name for layer in tvm_mp.list_layers(digits)]
    plan = PrecisionPlan({n: Precision(4, 8) for n in names[1:]})  # conv2d_0 left in fp32
    with pytest.raises(UnsupportedError) as info:
        tvm_mp.compile(digits, plan=plan, calibration=calibration_batches(2, 16), target="cortex-m4")
    assert "\n" not in str(info.value)


def test_missing_arm_tools_leave_figures_out_with_the_package(digits, monkeypatch):
    from tvm_mp.deploy import cortexm

    monkeypatch.setattr(cortexm.shutil, "which", lambda *a, **k: None)
    with pytest.warns(UserWarning, match="apt-get install gcc-arm-none-eabi"):
        cm = tvm_mp.compile(digits, plan=PrecisionPlan.uniform(digits, Precision(4, 8)),
                            calibration=calibration_batches(2, 16), target="cortex-m4")
    d = cm.report.deployment
    assert d["instructions"] is None and d["code_bytes"] is None and d["ram_bytes"] > d["weight_bytes"] > 0


@pytest.mark.external
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7"])
def test_compile_cortex_m_report_export_and_exact(digits, tmp_path, target):
    digits_split = load_digits_split()
    names = [layer.name for layer in tvm_mp.list_layers(digits)]
    plan = PrecisionPlan({n: Precision(w, 8) for n, w in zip(names, (8, 2, 4, 1))})
    cm = tvm_mp.compile(digits, plan=plan, calibration=calibration_batches(2, 16), target=target)
    d = cm.report.deployment
    assert d["code_bytes"] > 500 and d["activation_bytes"] > 0
    assert d["ram_bytes"] == d["weight_bytes"] + d["activation_bytes"]
    assert 10_000 < d["instructions"] < 20 * 452864 and d["instructions_basis"].startswith("emulated instructions")
    assert "emulated instructions" in str(cm.report) and " ms" not in str(cm.report).split("\n")[-1]
    with pytest.raises(tvm_mp.Error, match="not for this machine"):
        cm.run(digits_split.x_test[:1])
    out = cm.export(tmp_path / "out")
    assert (out / "bundle" / "net.c").is_file() and "net_run" in (out / "bundle" / "net.h").read_text()
    assert not (out / "model.so").exists()
    again = tvm_mp.load(out)
    xs = [digits_split.x_test[k][None] for k in range(3)]
    assert again.report.deployment == d
    np.testing.assert_array_equal(again.reference(xs[0]), cm.reference(xs[0]))
    result = run_network(again, xs, target=target)  # the exported plan's C, bit-exact on the board
    assert result.ok, result.failures()
