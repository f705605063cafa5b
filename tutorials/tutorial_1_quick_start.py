"""
Quick start: compile the bundled model under an energy budget
=============================================================

tvm-mp picks a precision per layer so that the model fits a budget (energy, latency or memory per inference)
while keeping as much accuracy as possible, then compiles the chosen plan into integer kernels with TVM.
"""

# %%
# Load a model and data
# ---------------------
import matplotlib.pyplot as plt
import numpy as np

import tvm_mp
from tvm_mp import Budget
from tvm_mp.datasets import calibration_batches, load_digits_split
from tvm_mp.models import digits_cnn_path

mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
digits = load_digits_split()
calib = calibration_batches(4, 32)


def top1(model) -> float:
    return float((model.run(digits.x_test).argmax(axis=1) == digits.y_test).mean())


# %%
# Compile under a budget
# ----------------------
# The search scores plans on the calibration data (top-1 agreement with fp32 unless you pass ``accuracy_fn``)
# and prices them with the cost model (energy is modelled on CPUs, and labelled so).
model = tvm_mp.compile(mod, budget=Budget(energy_uj=20.0), calibration=calib, accuracy_fn=top1)
print(model.plan.to_json())
print(model.report)
assert model.report.energy_uj <= 20.0  # by the cost model's estimate
assert model.report.accuracy > 0.95

# %%
# Where the energy goes
# ---------------------
# The report has the cost model's energy for each layer at the precision the search gave it.
fig, ax = plt.subplots(figsize=(6, 3))
rows = model.report.layers
ax.bar([f"{r.name}\n{r.precision}" for r in rows], [r.energy_uj for r in rows])
ax.set_ylabel(f"energy (uJ, {model.report.energy_basis})")
fig.tight_layout()

# %%
# Run it
# ------
y = model.run(digits.x_test[:8])
assert np.array_equal(y, model.reference(digits.x_test[:8]))  # bit-exact against the NumPy reference
print("predictions:", y.argmax(axis=1), "labels:", digits.y_test[:8])

# %%
# An impossible budget says what is possible
# ------------------------------------------
try:
    tvm_mp.compile(mod, budget=Budget(energy_uj=1e-6), calibration=calib)
except tvm_mp.Error as err:
    print("error:", err)
