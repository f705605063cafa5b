"""Modelled CPU energy: events x table, tables validated and replaceable."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tvm_mp.cost_models.base import CostModelError, Workload
from tvm_mp.cost_models.energy_cpu import CpuEnergyModel, CpuEnergyTable, default_tables
from tvm_mp.cost_models.features import OP_CLASSES, KernelCounter
from tvm_mp.workload import ConvParams

COUNTER = KernelCounter()
CONV = Workload("conv2d", (1, 16, 12, 12), (32, 16, 3, 3), 2, 2, "bitserial", ConvParams((1, 1), (1, 1, 1, 1)))


def test_energy_is_the_documented_sum_of_events_times_table():
    table = default_tables()["x86_64"]
    model = CpuEnergyModel(counter=COUNTER)
    ev = {k: float(v[0]) for k, v in COUNTER.events([CONV]).items()}
    ops = sum(ev[op] for op in OP_CLASSES)
    expected_pj = (sum(ev[op] * getattr(table, f"{op}_pj") for op in OP_CLASSES)
                   + ops / table.simd_lanes * table.instruction_pj
                   + ev["l1_load_bytes"] * table.l1_read_byte_pj + ev["l1_store_bytes"] * table.l1_write_byte_pj
                   + ev["l2_bytes"] * table.l2_byte_pj + ev["dram_bytes"] * table.dram_byte_pj)
    assert model.energy_uj([CONV])[0] == pytest.approx(expected_pj / 1e6, rel=1e-12)
    parts = model.breakdown_pj([CONV])
    assert sum(p[0] for p in parts.values()) == pytest.approx(expected_pj, rel=1e-12)


def test_fewer_bits_cost_less_energy_in_the_bitserial_kernel():
    model = CpuEnergyModel(counter=COUNTER)
    energies = model.energy_uj([CONV.replace(w_bits=b, a_bits=b) for b in (1, 2, 4, 8)])
    assert np.all(np.diff(energies) > 0)


def test_a_users_table_replaces_the_default(tmp_path):
    table = dataclasses.replace(default_tables()["aarch64"], name="my-board", dram_byte_pj=0.0, instruction_pj=0.0)
    path = tmp_path / "board.json"
    path.write_text(table.to_json())
    loaded = CpuEnergyTable.from_json(path)
    assert loaded == table
    arm = CONV.replace(target="aarch64")
    mine = CpuEnergyModel({"aarch64": loaded}, COUNTER).energy_uj([arm])[0]
    shipped = CpuEnergyModel(counter=COUNTER).energy_uj([arm])[0]
    assert 0 < mine < shipped


def test_bad_tables_and_targets_are_refused():
    with pytest.raises(CostModelError, match="finite, non-negative"):
        dataclasses.replace(default_tables()["x86_64"], int_mul_pj=-1.0)
    with pytest.raises(CostModelError, match="simd_lanes"):
        dataclasses.replace(default_tables()["x86_64"], simd_lanes=0)
    with pytest.raises(CostModelError, match="missing field"):
        CpuEnergyTable.from_json('{"name": "x"}')
    with pytest.raises(CostModelError, match="simulator"):
        CpuEnergyModel(counter=COUNTER).energy_uj([CONV.replace(target="accel")])


@pytest.mark.parametrize("fields", [dict(kind="float", exp_bits=5, man_bits=10, w_bits=16, a_bits=16),
                                    dict(kind="clustered", clusters=16, w_bits=4, a_bits=8)])
def test_cpu_energy_refuses_number_formats_naming_the_kind(fields):
    wl = CONV.replace(**fields)
    with pytest.raises(CostModelError, match=f"kind '{fields['kind']}'"):
        CpuEnergyModel(counter=COUNTER).energy_uj([CONV, wl])
