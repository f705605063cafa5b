"""The format energy model: the published points it must reproduce, its documented scaling rules, the associative PE."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_mp import Precision
from tvm_mp.formats import energy as E
from tvm_mp.layers import LayerInfo
from tvm_mp.workload import ConvParams

FIG = E.EnergyFigures()


def test_reproduces_the_published_45nm_points():
    assert FIG.float_mul_pj(5, 10) == pytest.approx(1.1)
    assert FIG.float_mul_pj(8, 23) == pytest.approx(3.7)
    assert FIG.int_mul_pj(8, 8) == pytest.approx(0.2)
    assert FIG.int_add_pj(32) == pytest.approx(0.1)
    assert FIG.sram_read_pj(32) == pytest.approx(5.0)
    # the square-root rule reproduces the keynote's 32 KB point (20 pJ per 64 bits) from the 8 KB one
    assert FIG.sram_read_pj(64, 32 * 1024) == pytest.approx(20.0)


def test_op_energy_per_format():
    assert E.op_energy(None).mac_pj == pytest.approx(3.7 + 0.9)
    assert E.op_energy(Precision.fp16()).mac_pj == pytest.approx(1.1 + 0.9)
    assert E.op_energy(Precision(8, 8)).mac_pj == pytest.approx(0.2 + 0.1)
    assert E.op_energy(Precision(4, 8)).mul_pj == pytest.approx(0.1)
    assert E.op_energy(Precision.clustered(16, 8)).mul_pj == pytest.approx(0.2)
    order = [E.op_energy(p).mul_pj for p in (Precision.fp8_e5m2(), Precision.fp8_e4m3(), Precision.bf16(),
                                              Precision.fp16())]
    assert order == sorted(order)  # narrower significands cost less


@given(st.integers(2, 8), st.integers(0, 10))
def test_float_multiply_grows_with_both_widths(e, m):
    assert FIG.float_mul_pj(e, m + 1) > FIG.float_mul_pj(e, m) > 0
    if e < 8:
        assert FIG.float_mul_pj(e + 1, m) > FIG.float_mul_pj(e, m)


def test_associative_pe_hit_and_miss():
    pe = E.AssociativePE.for_clustered(Precision.clustered(16, 8), entries=16)
    assert pe.key_bits == 4 + 8 and pe.product_bits == 16
    # search: 16 x 12 key bits read at the per-bit energy of a 24-byte memory
    assert pe.search_pj == pytest.approx(5.0 * 192 / 32 * math.sqrt(24 / 8192))
    assert pe.table_read_pj == pytest.approx(5.0 * 16 / 32 * math.sqrt(32 / 8192))
    assert pe.miss_pj == pytest.approx(pe.search_pj + 0.3)
    assert pe.hit_pj == pytest.approx(pe.search_pj + pe.table_read_pj + 0.1)
    assert pe.mac_pj(0.25) == pytest.approx(0.25 * pe.hit_pj + 0.75 * pe.miss_pj)
    # with the conservative CAM figure an 8-bit multiplier is cheaper than a search; a fp32 multiplier is not
    assert pe.saved_fraction(1.0) < 0
    assert pe.saved_fraction(1.0, baseline=E.op_energy(None)) > 0.5
    cheap = E.AssociativePE.for_clustered(Precision.clustered(16, 8), 16,
                                          figures=E.EnergyFigures(cam_search_factor=0.05))
    assert cheap.saved_fraction(1.0) > pe.saved_fraction(1.0)
    literature = E.AssociativePE.for_clustered(Precision.clustered(16, 8), 16,
                                               figures=E.EnergyFigures(cam_pj_per_bit=0.001))
    assert literature.search_pj == pytest.approx(0.192)
    fp32_pe = E.AssociativePE.for_clustered(Precision.clustered(16, 8), 16, multiplier="fp32")
    assert fp32_pe.product_bits == 32 and fp32_pe.miss_pj == pytest.approx(fp32_pe.search_pj + 4.6)
    assert fp32_pe.hit_pj == pytest.approx(fp32_pe.search_pj + fp32_pe.table_read_pj + 0.9)
    assert fp32_pe.saved_fraction(0.0) < 0 < fp32_pe.saved_fraction(1.0)
    approx = E.AssociativePE.for_clustered(Precision.clustered(16, 8), 16, top_bits=3)
    assert approx.key_bits == 7 and approx.search_pj < pe.search_pj
    with pytest.raises(E.EnergyModelError, match="fraction"):
        pe.mac_pj(1.5)
    with pytest.raises(E.EnergyModelError, match="not clustered"):
        E.AssociativePE.for_clustered(Precision(8, 8), 16)


def test_layer_energy_counts_macs_and_stored_bits():
    info = LayerInfo("conv2d_0", "conv2d", (1, 8, 6, 6), (16, 8, 3, 3), (1, 16, 6, 6),
                     ConvParams((1, 1), (1, 1, 1, 1)), True, 16 * 36 * 72, 16 * 72)
    fp32 = E.layer_energy(info, None)
    w8 = E.layer_energy(info, Precision(8, 8))
    assert fp32.compute_pj == pytest.approx(info.macs * 4.6)
    assert w8.memory_pj == pytest.approx((8 * info.weight_count + 8 * 288) * 5.0 / 32)
    assert E.weight_storage_bits(info, Precision.clustered(16, 8)) == 4 * info.weight_count + 8 * 16
    assert E.weight_storage_bits(info, Precision.float(3, 4)) == 8 * info.weight_count
    assert E.weight_storage_bits(info, Precision.fp16()) == 16 * info.weight_count
    assert fp32.total_pj > E.layer_energy(info, Precision.fp16()).total_pj > w8.total_pj
    assert E.layer_energy(info, Precision(8, 8), mac_pj=0.0).compute_pj == 0.0
    assert w8.energy_uj == pytest.approx(w8.total_pj / 1e6)


@pytest.mark.parametrize("bad", [dict(int8_mul_pj=0), dict(fp32_add_pj=float("nan")), dict(sram_reference_bytes=-1),
                                 dict(cam_search_factor=True), dict(cam_pj_per_bit=-1.0)])
def test_figures_validate(bad):
    with pytest.raises(E.EnergyModelError, match="finite, positive"):
        E.EnergyFigures(**bad)


# ---- stored bytes: what the artifact holds ------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(oc=st.integers(1, 12), r=st.integers(1, 40), k=st.integers(2, 64), seed=st.integers(0, 3),
       fmt=st.sampled_from([(5, 10, False), (8, 7, False), (4, 3, True), (5, 2, False), (3, 4, False), (8, 11, False)]))
def test_stored_weight_bytes_equal_the_kernels_constants(oc, r, k, seed, fmt):
    from tvm_mp.formats import kernels
    from tvm_mp.formats.energy import EnergyModelError, stored_weight_bytes
    from tvm_mp.quantize.clustering import cluster_weights
    from tvm_mp.quantize.floats import FloatFormat

    w = np.random.default_rng(seed).normal(size=(oc, r)).astype(np.float32)
    info = LayerInfo("d", "dense", (1, r), (oc, r), (1, oc), None, False, oc * r, oc * r)
    clustered = Precision.clustered(k, 8)
    stored = kernels.clustered_weight_storage(cluster_weights(w, k, seed=seed, n_init=1))
    assert stored_weight_bytes(info, clustered) == sum(a.nbytes for a in stored)
    prec = Precision.float(*fmt)
    assert stored_weight_bytes(info, prec) == kernels.float_weight_storage(w, FloatFormat.of(prec)).nbytes
    with pytest.raises(EnergyModelError, match="integer storage"):
        stored_weight_bytes(info, Precision(4, 4))
