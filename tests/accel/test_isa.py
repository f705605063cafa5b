import pytest

from tvm_mp.accel.isa import Alu, Deps, Gemm, Load, Program, ProgramError, Region, Store
from tvm_mp.errors import Error


def test_instructions_validate():
    with pytest.raises(ProgramError, match="unknown buffer 'psum'"):
        Load("psum", "inp", 0, 0, 0, 0, 0, 0)
    with pytest.raises(ProgramError, match="narrower than one padded row"):
        Load("inp", "inp", 0, 4, 0, 3, 2, 4)
    with pytest.raises(ProgramError, match="at least one micro-op"):
        Gemm(0, 0, 1, 1, 0, 0, 0, (0, 0))
    with pytest.raises(ProgramError, match="dataflow 'row'"):
        Gemm(0, 1, 1, 1, 0, 0, 0, (0, 0), dataflow="row")
    with pytest.raises(ProgramError, match="unknown ALU op 'mul'"):
        Alu("mul", 0, 1, 1, 1, 0, (0, 0))
    with pytest.raises(ProgramError, match="integer >= 0"):
        Store("out", -1, 1, 1, 1, 0, 1)
    with pytest.raises(ProgramError, match="region kind"):
        Region("psum", 4, 8)
    assert issubclass(ProgramError, Error)


def test_sizes_units_and_listing():
    load = Load("inp", "inp", 0, 10, 0, 7, 3, 4, pad_top=1, pad_left=1, pad_right=2, deps=Deps(push_next=True))
    assert (load.dram_entries, load.sram_entries, load.unit) == (12, 4 * 7, "load")
    assert Load("inp", "inp", 0, 0, 0, 0, 0, 0).sram_entries == 0  # a sync
    gemm = Gemm(0, 9, 4, 8, 0, 0, 0, (8, 1), (10, 1))
    assert (gemm.steps, gemm.unit) == (9 * 32, "compute")
    alu = Alu("mul_shift", 0, 2, 4, 8, 0, (8, 1), src_base=100)
    assert alu.reads_src == 2 and Alu("max_imm", 0, 1, 1, 1, 0, (0, 0)).reads_src == 0
    program = Program((load, gemm, alu, Store("out", 0, 8, 4, 8, 0, 16)), 4, 4)
    assert program.count() == {"LOAD": 1, "GEMM": 1, "ALU": 1, "STORE": 1}
    text = program.listing()
    assert "LOAD  inp<-inp[0] 3x4" in text and "push_next" in text and "mul_shift" in text
    assert str(Deps(pop_prev=True, push_next=True)) == "pop_prev,push_next"
