import json

import pytest

from tvm_mp.accel.hardware import HardwareConfig, HardwareError, mac_key
from tvm_mp.errors import Error


@pytest.fixture(scope="module")
def hw():
    return HardwareConfig.default()


def test_default_cites_the_45nm_figures(hw):
    assert "Horowitz" in hw.source and "ISSCC 2014" in hw.source
    ref = hw.reference_figures_pj
    assert (ref["int8_add"], ref["int8_mult"], ref["int32_add"], ref["int32_mult"]) == (0.03, 0.2, 0.1, 3.1)
    assert (ref["fp16_mult"], ref["fp32_mult"], ref["sram_8kb_read_32bit"], ref["dram_read_32bit"]) == \
        (1.1, 3.7, 5.0, 640.0)
    # derived entries follow the documented rules
    assert hw.dram.read_energy_pj_per_byte == ref["dram_read_32bit"] / 4
    for w in hw.supported_bits:
        for a in hw.supported_bits:
            lanes = 8 // max(w, a)
            expected = ref["int8_mult"] * w * a / 64 + ref["int32_add"] / lanes
            assert hw.mac_energy_pj[f"w{w}a{a}"] == pytest.approx(expected)
    for name, spec in hw.buffers.items():
        assert spec.read_energy_pj == pytest.approx(5.0 * (spec.size_bytes / 8192) ** 0.5, rel=1e-3), name


def test_precision_scaling(hw):
    base = hw.macs_per_cycle(8, 8)
    assert base == hw.batch * hw.block_in * hw.block_out
    assert hw.macs_per_cycle(4, 4) == 2 * base
    assert hw.macs_per_cycle(2, 2) == 4 * base
    assert hw.macs_per_cycle(1, 1) == 8 * base
    assert hw.macs_per_cycle(3, 4) == 2 * base  # 3 bits run in the 4-bit mode
    assert hw.macs_per_cycle(2, 8) == base  # a mixed pair runs at the wider operand's rate
    assert mac_key(3, 5) == "w4a8"
    # an entry holds more operands at lower precision, the same number of bits
    assert hw.entry_bits("inp", 4, 4) == hw.entry_bits("inp", 8, 8)
    assert hw.capacity_entries("wgt", 2, 2) == hw.capacity_entries("wgt", 8, 8)
    assert hw.entry_bits("inp", 8, 4) == hw.entry_bits("inp", 8, 8) // 2


def test_json_round_trip(hw, tmp_path):
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(hw.to_dict()))
    assert HardwareConfig.from_json(path) == hw
    assert HardwareConfig.from_json(path.read_text()) == hw


def _broken(hw, edit):
    data = hw.to_dict()
    edit(data)
    return json.dumps(data)


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["buffers"]["inp"].update(size_bytes=0), ["buffers.inp.size_bytes=0", "positive integer"]),
    (lambda d: d["buffers"]["wgt"].update(size_bytes=4), ["cannot hold one wgt entry", "at least"]),
    (lambda d: d.update(supported_bits=[8, 3]), ["supported_bits", "remove 3"]),
    (lambda d: d.update(supported_bits=[]), ["supported_bits"]),
    (lambda d: d["mac_energy_pj"].pop("w4a2"), ["mac_energy_pj has no entry 'w4a2'", "add its energy"]),
    (lambda d: d["alu_energy_pj"].pop("mul_shift"), ["alu_energy_pj has no entry 'mul_shift'"]),
    (lambda d: d["buffers"].pop("acc"), ["buffer 'acc' is missing"]),
    (lambda d: d["buffers"]["uop"].pop("word_bits"), ["buffers.uop lacks 'word_bits'"]),
    (lambda d: d.update(clock=100), ["unknown field 'clock'"]),
    (lambda d: d["dram"].update(bandwidth_bytes_per_cycle=-1), ["dram.bandwidth_bytes_per_cycle"]),
    (lambda d: d["gemm"].update(block_in=0), ["gemm.block_in=0"]),
])
def test_wrong_description_is_refused_with_the_fix(hw, edit, words):
    with pytest.raises(HardwareError) as err:
        HardwareConfig.from_json(_broken(hw, edit))
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    assert isinstance(err.value, Error)


def test_unsupported_precision_is_refused(hw):
    only8 = HardwareConfig.from_json(_broken(hw, lambda d: d.update(supported_bits=[8])))
    only8.check_precision(8, 5)  # 5 bits run in the 8-bit mode
    with pytest.raises(HardwareError, match="supports \\[8\\].*add 4 to supported_bits"):
        only8.check_precision(4, 8)
    with pytest.raises(HardwareError, match="out of range"):
        hw.check_precision(9, 8)


def test_missing_file_is_refused():
    with pytest.raises(HardwareError, match="not found"):
        HardwareConfig.from_json("/nonexistent/hw.json")
    with pytest.raises(HardwareError, match="not valid JSON"):
        HardwareConfig.from_json("{not json")


def test_with_changes_validates(hw):
    big = hw.with_changes(buffers={"wgt": {"size_bytes": 65536}})
    assert big.buffers["wgt"].size_bytes == 65536 and big.buffers["inp"] == hw.buffers["inp"]
    with pytest.raises(HardwareError):
        hw.with_changes(buffers={"acc": {"size_bytes": 0}})
