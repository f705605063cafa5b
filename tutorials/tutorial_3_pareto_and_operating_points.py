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
from pathlib import Path

import numpy as np

import tvm_mp
from tvm_mp.datasets import calibration_batches, load_digits_split
from tvm_mp.models import digits_cnn_path

out_dir = Path(os.environ.get("TVM_MP_TUTORIAL_OUT", "."))
mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
digits = load_digits_split()
calib = calibration_batches(4, 32)

# %%
# The front
# ---------
front = tvm_mp.explore(mod, calib, budgets=5, seed=0)
for point in front.front("energy_uj"):
    print(f"{point.cost('energy_uj'):.4f} uJ  score {point.score:.4f}  {point.kind}")
png = front.plot(out_dir / "pareto.png")
print("plot:", png)
front.to_json(out_dir / "pareto.json")

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
