"""
Explore the energy-accuracy Pareto front and switch operating points at run time
================================================================================

``tvm_mp.explore`` sweeps budgets with the precision search and keeps the non-dominated plans;
``tvm_mp.compile_adaptive`` builds one artifact holding several of them (sharing weights where it can), and
``select`` switches between them at run time without recompiling: the device can trade accuracy for energy as
its battery drains.
"""

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import tvm_mp
from tvm_mp.datasets import calibration_batches, load_digits_split
from tvm_mp.models import digits_cnn_path

# Everything this tutorial writes goes to a fresh temporary directory (set TVM_MP_TUTORIAL_OUT to keep it).
out_dir = Path(os.environ.get("TVM_MP_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="tvm-mp-tutorial-"))
mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
digits = load_digits_split()
calib = calibration_batches(4, 32)

# %%
# The front
# ---------
front = tvm_mp.explore(mod, calib, budgets=5, seed=0)
for point in front.front("energy_uj"):
    print(f"{point.cost('energy_uj'):.4f} uJ  score {point.score:.4f}  {point.kind}")
png = front.plot(out_dir / "pareto.png")  # the library's plot, written as a PNG
front.to_json(out_dir / "pareto.json")

# %%
# The same front drawn here with matplotlib: every plan on the energy front, and the uniform plans for comparison.
fig, ax = plt.subplots(figsize=(6, 4))
points = front.front("energy_uj")
ax.step([p.energy_uj for p in points], [p.score for p in points], where="post", color="0.6", label="front")
ax.scatter([p.energy_uj for p in points], [p.score for p in points], s=18, label="plans on the front")
uniform = front.uniform()
ax.scatter([p.energy_uj for p in uniform], [p.score for p in uniform], marker="s", facecolors="none",
           edgecolors="tab:red", s=22, label="uniform plans")
ax.set_xscale("log")
ax.set_xlabel(f"energy per inference (uJ, {front.energy_basis})")
ax.set_ylabel(f"score ({front.metric})")
ax.legend(loc="lower right")
fig.tight_layout()

# %%
# One artifact, several operating points
# --------------------------------------
points = front.front("energy_uj")[-3:]  # the three most accurate points of the energy front
adaptive = tvm_mp.compile_adaptive(mod, points, calibration=calib)
x = digits.x_test[:32]
for op in adaptive.points:
    adaptive.select(energy_uj=op.cost("energy_uj"))
    y = adaptive.run(x)
    print(f"point at {op.cost('energy_uj'):.4f} uJ: top-1 on 32 images "
          f"{float((y.argmax(1) == digits.y_test[:32]).mean()):.3f}")
    # the same outputs as compiling that plan on its own
    alone = tvm_mp.compile(mod, plan=op.plan, calibration=calib)
    assert np.array_equal(y, alone.run(x))
