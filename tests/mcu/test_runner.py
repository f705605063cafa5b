"""The toolchain runner: clear errors, timeouts, faults, and exact instruction counts from QEMU's exec log."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_mp.errors import Error
from tvm_mp.mcu import runner
from tvm_mp.mcu.harness import Check, main_source
from tvm_mp.mcu.runner import McuRunError, ToolchainError, build_firmware, run_on_qemu

PROBE = r"""
volatile int32_t vq_data_probe = 12345; /* in .data: the startup code copies it from flash */
volatile int32_t vq_bss_probe; /* in .bss: zeroed by the startup code */
/* exactly 1 + 2 * 100 + 1 instructions per call */
__attribute__((naked, noinline)) void vq_probe(void) {
  __asm__ volatile("movs r0, #100\n1:\n\tsubs r0, r0, #1\n\tbne 1b\n\tbx lr\n");
}
"""


def firmware_with(code: str, declarations: str, tmp_path, expected=np.zeros(1, np.uint8)):
    check = Check("only", code, "only_y", "uint8_t", expected)
    return build_firmware({"main.c": main_source([check], declarations)}, tmp_path)


def test_missing_tool_names_the_debian_package(monkeypatch):
    monkeypatch.setattr(runner.shutil, "which", lambda name: None)
    for tool, package in [("arm-none-eabi-gcc", "gcc-arm-none-eabi"), ("qemu-system-arm", "qemu-system-arm")]:
        with pytest.raises(ToolchainError, match=package) as err:
            runner.find_tool(tool)
        assert isinstance(err.value, Error) and "\n" not in str(err.value)
    with pytest.raises(ToolchainError, match="arm-none-eabi-gcc"):
        build_firmware({"main.c": "int main(void) { return 0; }"})


def test_unknown_target():
    with pytest.raises(ToolchainError, match="cortex-m3"):
        runner.get_target("cortex-a53")


@pytest.mark.external
def test_instruction_count_of_a_known_loop(tmp_path):
    code = "    vq_probe(); vq_probe(); vq_probe(); only_y[0] = vq_data_probe == 12345 && vq_bss_probe == 0;"
    fw = firmware_with(code, PROBE + "void vq_probe(void);\n", tmp_path, expected=np.ones(1, np.uint8))
    assert fw.sections[".data"] >= 4
    assert fw.symbols["vq_probe"] == 8  # movs, subs, bne, bx: 16-bit Thumb instructions
    first = run_on_qemu(fw, count_instructions=True)
    assert first.checks["only"].ok and first.exit_status == 0
    assert first.symbol_instructions()["vq_probe"] == 3 * 202
    assert first.region_instructions(["vq_probe"], parents=["main"])["vq_probe"] == 3 * 202
    assert first.instructions == sum(n for _, n in first.trace_runs)
    assert run_on_qemu(fw, count_instructions=True).instructions == first.instructions  # deterministic
    assert run_on_qemu(fw).instructions is None


@pytest.mark.external
def test_a_hanging_firmware_times_out(tmp_path):
    fw = firmware_with("    for (;;) { __asm__ volatile(\"\"); }", "", tmp_path)
    with pytest.raises(McuRunError, match="did not finish within 2 s"):
        run_on_qemu(fw, timeout_s=2)


@pytest.mark.external
def test_a_fault_is_reported(tmp_path):
    fw = firmware_with("    *(volatile uint32_t *)0xF0000000u = 1u;", "", tmp_path)
    with pytest.raises(McuRunError, match="fault"):
        run_on_qemu(fw, timeout_s=20)


@pytest.mark.external
def test_a_compile_error_is_one_line(tmp_path):
    with pytest.raises(ToolchainError, match="failed") as err:
        build_firmware({"main.c": "int main(void) { return undefined_name; }"}, tmp_path)
    assert "\n" not in str(err.value)
