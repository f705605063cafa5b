"""
Tune on a device over TVM RPC
=============================

``tvm_mp.tune`` measures each kernel of a plan under several schedule configurations on devices registered with a
TVM RPC tracker, writes every measurement to a record store as it is taken, and puts the fastest correct
configuration of each kernel into a tuning database that the next ``tvm_mp.compile`` of the target reads. On a real
board you would run, on the board, ``python -m tvm.exec.rpc_server --tracker HOST:9190 --key my-board`` and on the
host ``python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190``. Here a tracker and one server run on
127.0.0.1. (Without ``rpc=``, ``tune`` measures on this machine.)
"""

# %%
# A tracker and a device on this machine
# --------------------------------------
import os
import tempfile
from pathlib import Path

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.measure.records import RecordStore
from tvm_mp.measure.rpc import LocalRPCCluster
from tvm_mp.models import digits_cnn_path
from tvm_mp.tune import RPCConfig, tune

# Everything this tutorial writes goes to a fresh temporary directory (set TVM_MP_TUTORIAL_OUT to keep it).
out_dir = Path(os.environ.get("TVM_MP_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="tvm-mp-tutorial-"))
mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
plan = PrecisionPlan({"conv2d_0": Precision(2, 2), "conv2d_1": Precision(2, 2)})
records = out_dir / "tutorial_records.jsonl"
# By default tune writes the user database ($TVM_MP_HOME/tuning.json, ~/.cache/tvm-mp/ unless set), which every
# later compile reads; this tutorial keeps its database in its own directory instead.
database = out_dir / "tuning.json"

with LocalRPCCluster("tutorial-board") as cluster:
    rpc = RPCConfig("tutorial-board", *cluster.tracker)

    # %%
    # Tune
    # ----
    # Two kernels, three configurations each. Killing this (even kill -9) and running it again resumes: jobs with
    # a record are skipped. A device dying mid-run costs one job, retried on another device.
    result = tune(mod, plan, rpc=rpc, trials=3, records=records, database=database, progress=False)
    print(f"measured {result.measured}, skipped {result.skipped}, failed {result.failed}")
    for key, (config, latency_us) in result.best.items():
        print(f"{latency_us:9.2f} us  {config}  {key}")

    # %%
    # Run it again: nothing is measured twice
    # ---------------------------------------
    again = tune(mod, plan, rpc=rpc, trials=3, records=records, database=database, progress=False)
    print(f"second run: measured {again.measured}, skipped {again.skipped}")
    assert again.measured == 0 and again.skipped == result.jobs

# %%
# The records and the tuning database
# -----------------------------------
# Records are JSON lines (one per measurement, flushed as written); the cost models train on them
# (``tvm-mp cost-model train --records host_kernels.jsonl --records tutorial_records.jsonl --out board.json``, then
# ``compile(..., cost_model="board.json")``). The database holds the best configuration per kernel, keyed by the
# target (``tvm_mp.targets.parse("host").key``).
store = RecordStore(records)
print(len(store.load()), "records;", "tuning database:", result.database_path)
assert len(store.load()) == result.jobs and result.database_path == database

# %%
# The next compile builds the tuned kernels
# -----------------------------------------
# Each layer of the report says which knobs its kernel was built with and where they came from: the two tuned
# layers from the database, the others from the schedules' defaults.
from tvm_mp.datasets import calibration_batches  # noqa: E402

model = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(2, 2)), calibration=calibration_batches(2, 16),
                       database=database)
for row in model.report.layers:
    print(f"{row.name:<9} {row.schedule['algorithm']:<7} oc_block={row.schedule['oc_block']}  {row.schedule_source}")
assert [r.schedule_source for r in model.report.layers[:2]] == ["tuned (tuning.json)"] * 2
