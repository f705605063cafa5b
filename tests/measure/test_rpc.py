"""Measurement over TVM RPC against a tracker and a server started here as subprocesses."""

from __future__ import annotations

import pytest

from tvm_mp.cost_models.base import CostModelError, Workload
from tvm_mp.measure.rpc import LocalRPCCluster, RPCSource
from tvm_mp.measure.source import TimingConfig


@pytest.mark.external
def test_rpc_source_measures_on_a_localhost_server():
    key = "tvm-mp-test"
    wls = [Workload("dense", (1, 128), (16, 128), 2, 2, "bitserial", None, "acc", device=key),
           Workload("dense", (1, 128), (16, 128), 8, 8, "packed", None, "requant", device=key)]
    with LocalRPCCluster(key) as cluster:
        source = RPCSource(key, tracker=cluster.tracker, timing=TimingConfig(repeat=3, min_repeat_ms=1.0,
                                                                              max_attempts=1))
        records = source.measure(wls)
        processes = list(cluster.processes)
    assert all(p.poll() is not None for p in processes)  # stopped with their process groups
    for rec, wl in zip(records, wls):
        assert rec.error is None, rec.error
        assert rec.workload == wl and rec.source == "rpc" and rec.meta["key"] == key
        assert len(rec.latency_samples_ms) == 3 and 0 < rec.latency_ms < 100


def test_rpc_source_arguments_are_checked():
    with pytest.raises(CostModelError, match="exactly one"):
        RPCSource("k")
    with pytest.raises(CostModelError, match="device key"):
        RPCSource("", tracker=("127.0.0.1", 9190))
