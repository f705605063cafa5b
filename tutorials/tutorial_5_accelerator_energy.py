"""
Target the precision-scalable accelerator and read its energy report
====================================================================

tvm-mp ships a simulator of a small VTA-like integer accelerator whose GEMM core runs w8a8, w4a4 and w2a2
at 1x, 2x and 4x the MACs per cycle. Layers mapped to it run, bit-exact, through the simulator inside the Relax
VM; the rest stay on the CPU. The simulator counts cycles and events (DRAM bytes, SRAM reads and writes per
buffer, MACs per precision) and prices them with the hardware description's energy table (45 nm figures, cited
in ``tvm_mp/accel/default.json``).
"""

# %%
# A model and two plans
# ---------------------
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.accel.hardware import HardwareConfig
from tvm_mp.datasets import calibration_batches, load_digits_split
from tvm_mp.driver import compile_offloaded
from tvm_mp.models import digits_cnn_path

# Everything this tutorial writes goes to a fresh temporary directory (set TVM_MP_TUTORIAL_OUT to keep it).
out_dir = Path(os.environ.get("TVM_MP_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="tvm-mp-tutorial-"))
mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
digits = load_digits_split()
calib = calibration_batches(4, 32)
hw = HardwareConfig.default()
print(hw.name)

# %%
# Compile for the accelerator
# ---------------------------
# Every planned layer the hardware supports is offloaded (``accel_layers=`` picks them by name). Each layer's
# mapping (tiling, loop order, which operand stays resident) is searched for the lowest energy.
energies = {}
for text in ("w8a8", "w4a4"):
    plan = PrecisionPlan.uniform(mod, Precision.parse(text))
    model = compile_offloaded(mod, plan, calib, hw=hw)
    x = digits.x_test[:1]
    y = model.run(x)
    assert np.array_equal(y, model.reference(x))  # bit-exact against the NumPy reference
    report = model.accel_report(f"digits {text}")
    print(report)
    energies[text] = report.energy_uj
    png = report.plot(out_dir / f"accel_energy_{text}.png")
    print("energy breakdown plot:", png)
    accuracy = float((model.run(digits.x_test[:100]).argmax(1) == digits.y_test[:100]).mean())
    print(f"{text}: {report.energy_uj:.3f} uJ per inference (simulated), top-1 on 100 test images {accuracy:.2f}")
    model.close()

# %%
# Lower precision, less energy
# ----------------------------
# The same datapath does twice the w4a4 MACs per cycle, and every buffer word holds twice the operands.
print(f"w4a4 uses {100 * energies['w4a4'] / energies['w8a8']:.1f} % of the w8a8 energy")
fig, ax = plt.subplots(figsize=(4, 3))
ax.bar(list(energies), list(energies.values()), color=["tab:blue", "tab:green"])
ax.set_ylabel("energy per inference (uJ, simulated)")
ax.set_title("digits CNN on the accelerator")
fig.tight_layout()
assert energies["w4a4"] < energies["w8a8"]
