"""
Tune a few layers, then compile with the tuned configs
======================================================

``tvm_mp.tune`` tries several schedule configurations (knobs such as the output-channel block and the pixel unroll)
of each integer kernel of a plan, measures them, checks each one bit-exact against the default configuration's
output, and writes the fastest into a tuning database. ``tvm_mp.compile`` reads that database: the kernels it
builds use the tuned knobs, and the report says where each kernel's knobs came from.

Here the kernels are timed on this machine (no device, no RPC; a small budget of trials so it runs in seconds).
For a board over RPC see the "Tune on a device over TVM RPC" tutorial; for ``target="aarch64"`` without a board,
``tune`` counts emulated instructions under ``qemu-aarch64`` instead of timing (``docs/tuning.md``).
"""

# %%
# Two layers of the digits CNN
# ----------------------------
import json
import os
import tempfile
from pathlib import Path

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.datasets import calibration_batches
from tvm_mp.models import digits_cnn_path
from tvm_mp.targets import parse
from tvm_mp.tune import plan_tasks, tune

# Everything this tutorial writes goes to a fresh temporary directory (set TVM_MP_TUTORIAL_OUT to keep it).
out_dir = Path(os.environ.get("TVM_MP_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="tvm-mp-tutorial-"))
mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
plan = PrecisionPlan({"conv2d_1": Precision(4, 4), "dense_0": Precision(4, 4)})
tasks = plan_tasks(mod, plan)
print([task.key() for task in tasks])

# %%
# Tune on this machine
# --------------------
# Three configurations per kernel (the default first, then a seeded sample of the space), each timed 3 x 10 runs.
# By default ``tune`` writes the user database (``$TVM_MP_HOME/tuning.json``) that every later compile of the
# target reads; this tutorial keeps its database (and the measurement records) in its own directory.
database = out_dir / "tuning.json"
result = tune(mod, plan, target="host", trials=3, records=out_dir / "records.jsonl", database=database,
              number=10, repeat=3, progress=False)
print(f"measured {result.measured}, failed {result.failed}")
for key, (config, latency_us) in result.best.items():
    print(f"{latency_us:8.2f} us  {config}  {key}")

# %%
# The database entries
# --------------------
# One entry per kernel, under the target's key: the chosen knobs and what they measured.
entries = json.loads(database.read_text())["records"][parse("host").key]
for key, entry in entries.items():
    print(key, entry)

# %%
# Compile with the tuned configs
# ------------------------------
# The compile reads ``database``: each tuned layer's kernel is built with the database's knobs, and the report row
# says so (``schedule`` and ``schedule_source``); the layers that were not tuned use the schedules' defaults.
model = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(4, 4)), calibration=calibration_batches(2, 16),
                       database=database)
rows = {row.name: row for row in model.report.layers}
for row in model.report.layers:
    print(f"{row.name:<9} {row.schedule}  ({row.schedule_source})")
for name, task in zip(("conv2d_1", "dense_0"), tasks):
    assert rows[name].schedule == entries[task.key()]["config"]  # the built kernel's knobs: the database entry's
    assert rows[name].schedule_source == "tuned (tuning.json)"
