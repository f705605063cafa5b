"""
Target the precision-scalable accelerator and read its energy report
====================================================================

tvm-mp ships a simulator of a small VTA-like integer accelerator whose GEMM core runs w8a8, w4a4 and w2a2
at 1x, 2x and 4x the MACs per cycle. ``tvm_mp.compile(..., target="accel")`` builds a model whose integer layers
run, bit-exact with the CPU build of the same plan, on the simulator (called from the Relax VM); layers the
datapath cannot run stay on the CPU. The simulator counts cycles and events (DRAM bytes, SRAM reads and writes per
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
from tvm_mp import Budget, Precision, PrecisionPlan
from tvm_mp.accel.hardware import HardwareConfig
from tvm_mp.datasets import calibration_batches, load_digits_split
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
# ``target="accel"`` (or ``{"kind": "accel", "config": "my_accel.json"}`` for your own hardware description).
# Each layer's mapping (tiling, loop order, which operand stays resident) is searched for the lowest energy. The
# report's figures are the simulator's: cycles at the clock and energy per component.
energies = {}
for text in ("w8a8", "w4a4"):
    plan = PrecisionPlan.uniform(mod, Precision.parse(text))
    model = tvm_mp.compile(mod, plan=plan, target="accel", calibration=calib)
    x = digits.x_test[:1]
    y = model.run(x)
    assert np.array_equal(y, model.reference(x))  # bit-exact against the NumPy reference (and the CPU build)
    print(model.report)
    energies[text] = model.report.energy_uj
    png = model.accel.report(f"digits {text}", model.report.layers).plot(out_dir / f"accel_energy_{text}.png")
    print("energy breakdown plot:", png)
    accuracy = float((model.run(digits.x_test[:40]).argmax(1) == digits.y_test[:40]).mean())
    print(f"{text}: {model.report.energy_uj:.3f} uJ per inference (simulated), top-1 on 40 test images "
          f"{accuracy:.2f}")

# %%
# Export and load
# ---------------
# The artifact holds the host library, and under ``accel/`` the hardware description, each layer's mapping,
# weights and instruction listing; ``tvm_mp.load`` registers the accelerator runtime again.
art = model.export(out_dir / "digits_w4a4_accel")
print(sorted(p.name for p in (art / "accel").iterdir()))
again = tvm_mp.load(art)
assert np.array_equal(again.run(x), y)

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

# %%
# A budget on the accelerator
# ---------------------------
# ``budget=`` searches a precision per layer with the accelerator's cost model (precision and mapping jointly);
# the built model's simulated energy is checked against the limit (a miss corrects the costs and searches again).
limit = 0.5 * (energies["w8a8"] + energies["w4a4"])
best = tvm_mp.compile(mod, budget=Budget(energy_uj=limit), target="accel", calibration=calib[:2])
print(f"budget {limit:.3f} uJ -> {best.report.energy_uj:.3f} uJ simulated:",
      " ".join(f"{n}={p}" for n, p in best.plan.items()))
assert best.report.energy_uj <= limit
