import pytest

from tvm_mp.accel.energy import COMPONENTS, Events, energy_of
from tvm_mp.accel.hardware import HardwareConfig, HardwareError

HW = HardwareConfig.default()


def test_energy_is_count_times_action_energy():
    ev = Events(dram_read_bits=8 * 1000, dram_write_bits=8 * 10, sram_read_bits={"wgt": 32 * 7},
                sram_write_bits={"acc": 64}, macs={"w4a4": 100, "w8a8": 10}, alu_lane_ops={"mul_shift": 3},
                instructions=2)
    e = energy_of(ev, HW)
    pj = e.components_uj
    assert pj["dram"] == pytest.approx(1010 * 160.0 * 1e-6)
    assert pj["wgt_sram"] == pytest.approx(7 * 10.0 * 1e-6)
    assert pj["acc_sram"] == pytest.approx(2 * 10.0 * 1e-6)
    assert pj["mac"] == pytest.approx((100 * 0.1 + 10 * 0.3) * 1e-6)
    assert pj["alu"] == pytest.approx(3 * 3.2 * 1e-6)
    assert pj["fetch"] == pytest.approx(2 * 16 * 160.0 * 1e-6)
    assert e.total_uj == pytest.approx(sum(pj.values()))
    assert set(e.to_dict()) == {"total_uj"} | {f"{c}_uj" for c in COMPONENTS}


def test_events_add_and_validate():
    a = Events(8, 0, {"inp": 32}, {}, {"w8a8": 1}, {}, 1)
    b = Events(16, 8, {"inp": 32, "wgt": 64}, {"acc": 1}, {"w8a8": 2, "w2a2": 5}, {"add": 4}, 2)
    c = a + b
    assert c.counts()["dram_read_bits"] == 24 and c.sram_read_bits == {"inp": 64, "wgt": 64}
    assert c.macs == {"w8a8": 3, "w2a2": 5} and c.instructions == 3
    with pytest.raises(ValueError):
        Events(dram_read_bits=-1)


def test_unknown_mode_needs_an_energy_entry():
    only8 = HW.with_changes(supported_bits=[8], mac_energy_pj={"w8a8": 0.3})
    with pytest.raises(HardwareError, match="no entry 'w4a4'"):
        energy_of(Events(macs={"w4a4": 1}), only8)
