import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_mp.accel.hardware import HardwareConfig
from tvm_mp.accel.isa import Alu, Gemm, Load, Store
from tvm_mp.accel.lower import (
    ConvShape,
    LayerMapping,
    LayerPlan,
    MappingError,
    OutputSpec,
    default_mapping,
    input_mask,
    lower,
    output_mask,
    pack_input,
    pack_weights,
    super_group_size,
    unpack_output,
    weight_mask,
)
from tvm_mp.workload import ConvParams

HW = HardwareConfig.default()


def test_depthwise_super_groups_fill_the_blocks():
    dw = ConvShape(1, 64, 8, 8, 64, 3, 3, ConvParams(padding=(1, 1, 1, 1), groups=64))
    assert super_group_size(dw, 16, 16) == 16  # 8 bits: 16 channels per block
    assert super_group_size(dw, 32, 16) == 32  # 4 bits: the input block holds 32 channels
    plan = LayerPlan(dw, 4, 4, HW, LayerMapping(8, 8, 2, 1))
    assert (plan.nsg, plan.icb_max, plan.ocb_max) == (2, 1, 2)
    dense = ConvShape(1, 64, 8, 8, 64, 3, 3, ConvParams(padding=(1, 1, 1, 1)))
    assert super_group_size(dense, 16, 16) == 1


def test_capacity_error_names_the_buffer_and_the_fix():
    shape = ConvShape(1, 64, 32, 32, 64, 3, 3, ConvParams(padding=(1, 1, 1, 1)))
    with pytest.raises(MappingError, match=r"inp buffer holds .* use fewer rows/columns .* or single buffering"):
        LayerPlan(shape, 8, 8, HW, LayerMapping(32, 32, 1, 4))
    with pytest.raises(MappingError, match="larger than the layer"):
        LayerPlan(shape, 8, 8, HW, LayerMapping(33, 32, 1, 1))
    # lower precision: each entry holds more channels, so the same tile in channels fits
    with pytest.raises(MappingError, match="inp"):
        LayerPlan(shape, 8, 8, HW, LayerMapping(4, 32, 1, 4))
    LayerPlan(shape, 2, 2, HW, LayerMapping(4, 32, 1, 1))  # 64 channels = one 2-bit block


@settings(max_examples=25)
@given(c=st.integers(1, 70), oc=st.integers(1, 70), h=st.integers(1, 9), groups=st.sampled_from([1, 2, 5]),
       bits=st.sampled_from([(8, 8), (4, 4), (2, 2), (1, 1), (8, 2)]), n=st.integers(1, 3))
def test_packing_keeps_every_element_once(c, oc, h, groups, bits, n):
    c, oc = c * groups, oc * groups
    shape = ConvShape(n, c, h, h, oc, 3, 3, ConvParams(padding=(1, 1, 1, 1), groups=groups))
    plan = LayerPlan(shape, *bits, HW, LayerMapping(1, 1, 1, 1), check=False)
    rng = np.random.default_rng(c * 1000 + oc)
    codes = rng.integers(0, 256, (n, c, h, h))
    region, mask = pack_input(plan, codes), input_mask(plan)
    assert region.shape == mask.shape and region.shape[1:] == (HW.batch, plan.bi)
    np.testing.assert_array_equal(np.sort(region[mask]), np.sort(codes.reshape(-1)))
    w = rng.integers(-127, 128, (oc, c // groups, 3, 3))
    wr, wmask = pack_weights(plan, w), weight_mask(plan)
    np.testing.assert_array_equal(np.sort(wr[wmask]), np.sort(w.reshape(-1)))
    assert not wr[~wmask].any()  # block-diagonal and lane padding are zeros
    omask = output_mask(plan)
    assert omask.sum() == n * oc * shape.oh * shape.ow
    marked = np.where(omask, 1, 0)
    assert unpack_output(plan, marked).min() == 1  # every real output element comes from a real slot


def test_program_structure_and_tokens():
    shape = ConvShape(1, 32, 16, 16, 48, 3, 3, ConvParams(padding=(1, 1, 1, 1)))
    plan = LayerPlan(shape, 8, 8, HW, LayerMapping(4, 16, 2, 2, "oc_sp"), OutputSpec.codes(8))
    program = lower(plan)
    counts = program.count()
    steps = list(plan.steps())
    assert counts["GEMM"] == len(steps) + sum(s.ic == 0 for s in steps)  # one GEMM per step + resets
    assert counts["ALU"] == 5 * sum(s.ic == len(plan.ic_tiles(s.sg)) - 1 for s in steps)
    assert counts["STORE"] == sum(plan.oc_tiles(0)) * len(plan.h_tiles) * len(plan.w_tiles)
    ins = program.instructions
    pushes = {u: sum(1 for i in ins if i.unit == u and i.deps.push_next) for u in ("load", "compute")}
    pops = {u: sum(1 for i in ins if i.unit == u and i.deps.pop_prev) for u in ("compute", "store")}
    assert pushes["load"] == pops["compute"] and pushes["compute"] == pops["store"]
    assert sum(i.deps.push_prev for i in ins if isinstance(i, (Gemm, Alu))) == \
        sum(i.deps.pop_next for i in ins if isinstance(i, Load))
    assert sum(i.deps.push_prev for i in ins if isinstance(i, Store)) == \
        sum(i.deps.pop_next for i in ins if isinstance(i, (Gemm, Alu)))
    # oc_sp with the whole reduction in one tile keeps weights resident: one weight load per oc tile
    assert sum(1 for i in ins if isinstance(i, Load) and i.buffer == "wgt") == len(plan.oc_tiles(0))
    assert "GEMM/weight" in program.listing(20)


def test_default_mapping_fits_every_precision():
    shape = ConvShape(1, 256, 3, 3, 256, 1, 1)
    for bits in ((8, 8), (4, 4), (2, 2), (1, 1)):
        mapping = default_mapping(shape, *bits, HW)
        LayerPlan(shape, *bits, HW, mapping)
    tiny = HW.with_changes(buffers={"acc": {"size_bytes": 128}})
    with pytest.raises(MappingError, match="acc"):
        default_mapping(shape, 8, 8, tiny, OutputSpec.codes(8))
