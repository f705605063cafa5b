"""Clustered weights: k-means result, index packing, table look-up = integer MACs, hit-rate statistics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_mp.errors import PlanError
from tvm_mp.quantize import clustering as CL
from tvm_mp.quantize import reference
from tvm_mp.workload import ConvParams


@settings(max_examples=30)
@given(st.integers(2, 64), st.integers(1, 400), st.integers(0, 2**31 - 1))
def test_cluster_weights_shares_at_most_k_int8_values(clusters, size, seed):
    w = np.random.default_rng(seed).standard_normal((size,)).astype(np.float32) * 0.1
    cw = CL.cluster_weights(w.reshape(size, 1), clusters, seed=0)
    assert len(cw.centroids_q) <= clusters and cw.centroids_q.dtype == np.int8
    assert (np.diff(cw.centroids_q.astype(int)) > 0).all()
    assert np.abs(cw.centroids_q).max() == 127 or np.abs(w).max() == 0
    # every weight takes the nearest quantized centroid
    levels = cw.centroids_q.astype(np.float64) * cw.scale
    err = np.abs(levels[cw.indices.reshape(-1)] - w)
    best = np.abs(levels[None, :] - w[:, None]).min(axis=1)
    np.testing.assert_allclose(err, best, rtol=0, atol=1e-12)


def test_cluster_weights_is_deterministic_and_better_than_few_levels():
    w = np.random.default_rng(0).standard_normal((32, 16, 3, 3)).astype(np.float32)
    a, b = CL.cluster_weights(w, 16, seed=3), CL.cluster_weights(w, 16, seed=3)
    np.testing.assert_array_equal(a.w_q, b.w_q)
    assert a.scale == b.scale
    err = {k: np.mean((CL.cluster_weights(w, k).w_q * CL.cluster_weights(w, k).scale - w) ** 2) for k in (4, 16, 64)}
    assert err[4] > err[16] > err[64]
    few = np.array([0.5, -0.25, 0.5, 0.0], np.float32)  # fewer distinct values than clusters: kept exactly
    cw = CL.cluster_weights(few, 8)
    np.testing.assert_allclose(cw.w_q * cw.scale, few, atol=0.5 / 127)


def test_from_integer_weights_recovers_and_refuses_too_many_values():
    cw = CL.cluster_weights(np.random.default_rng(1).standard_normal((6, 20)), 8)
    back = CL.from_integer_weights(cw.w_q, cw.scale, 8)
    np.testing.assert_array_equal(back.w_q, cw.w_q)
    with pytest.raises(PlanError, match="distinct values"):
        CL.from_integer_weights(np.arange(10, dtype=np.int8), 1.0, 8)


@settings(max_examples=60)
@given(st.integers(1, 8), st.integers(0, 300), st.integers(0, 2**31 - 1))
def test_index_packing_round_trip_and_size(bits, count, seed):
    idx = np.random.default_rng(seed).integers(0, 1 << bits, count).astype(np.uint8)
    words = CL.pack_indices(idx, bits)
    assert words.dtype == np.uint32 and len(words) == -(-count * bits // 32) + 1
    np.testing.assert_array_equal(CL.unpack_indices(words, bits, count), idx)


def test_product_table():
    table = CL.product_table(np.array([-3, 0, 5], np.int8), 2)
    np.testing.assert_array_equal(table, [[0, -3, -6, -9], [0, 0, 0, 0], [0, 5, 10, 15]])


@settings(max_examples=30)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(2, 64), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_table_lookup_equals_integer_macs(groups, kg, clusters, a_bits, seed):
    rng = np.random.default_rng(seed)
    params = ConvParams((1, 2), (1, 0, 1, 2), (1, 1), groups)
    codes = rng.integers(0, 1 << a_bits, (2, 2 * groups, 5, 6)).astype(np.uint8)
    cw = CL.cluster_weights(rng.standard_normal((kg * groups, 2, 3, 2)), clusters)
    zp = int(rng.integers(0, 1 << a_bits))
    np.testing.assert_array_equal(CL.conv2d_acc(codes, cw, params, zp, a_bits),
                                  reference.conv2d_acc(codes, cw.w_q, params, zp))
    dense_cw = CL.cluster_weights(rng.standard_normal((5, 13)), clusters)
    dcodes = codes.reshape(2, -1)[:, :13]
    np.testing.assert_array_equal(CL.dense_acc(dcodes, dense_cw, a_bits), reference.dense_acc(dcodes, dense_cw.w_q))


def test_pair_counts_count_every_mac():
    rng = np.random.default_rng(2)
    params = ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 2)
    codes = rng.integers(0, 16, (3, 4, 5, 5)).astype(np.uint8)
    cw = CL.cluster_weights(rng.standard_normal((6, 2, 3, 3)), 8)
    counts = CL.pair_counts(codes, cw, 4, params, zero_point=7)
    assert counts.shape == (8, 16) and counts.sum() == 3 * 6 * 5 * 5 * 2 * 3 * 3
    # brute force over the im2col windows
    cols = reference.im2col(codes, 3, 3, params, 7)  # [N, G, OH, OW, R]
    idx = cw.indices.reshape(2, 3, 18)
    brute = np.zeros((8, 16), np.int64)
    for g in range(2):
        for k in range(3):
            np.add.at(brute, (np.broadcast_to(idx[g, k], cols[:, g].shape), cols[:, g]), 1)
    np.testing.assert_array_equal(counts, brute)
    dense_cw = CL.cluster_weights(rng.standard_normal((3, 10)), 4)
    dcodes = rng.integers(0, 16, (5, 10)).astype(np.uint8)
    dcounts = CL.pair_counts(dcodes, dense_cw, 4)
    brute = np.zeros((4, 16), np.int64)
    np.add.at(brute, (np.broadcast_to(dense_cw.indices[None], (5, 3, 10)),
                      np.broadcast_to(dcodes[:, None], (5, 3, 10))), 1)
    np.testing.assert_array_equal(dcounts, brute)


def test_hit_statistics_on_a_hand_made_histogram():
    counts = np.zeros((2, 4), np.int64)  # 2 clusters, 2-bit codes
    counts[0, 0], counts[1, 0], counts[0, 3], counts[1, 2], counts[1, 3] = 50, 30, 10, 6, 4
    stats = CL.hit_statistics(counts, counts, a_bits=2, entries=2, top_bits=1)
    assert stats.macs == 100 and stats.exact_hit_rate == pytest.approx(0.8)  # (0,0) and (1,0)
    # top bit only: cluster 0 -> {low: 50, high: 10}, cluster 1 -> {low: 30, high: 10}; best two: 50 + 30
    assert stats.approx_hit_rate == pytest.approx(0.8)
    assert stats.zero_code_rate == pytest.approx(0.8)
    stats3 = CL.hit_statistics(counts, counts, 2, 3, 1)
    assert stats3.exact_hit_rate == pytest.approx(0.9) and stats3.approx_hit_rate == pytest.approx(0.9)
    # entries chosen on one data set, counted on another
    other = np.zeros_like(counts)
    other[1, 1] = 7
    assert CL.hit_statistics(counts, other, 2, 2, 1).exact_hit_rate == 0.0
    assert CL.hit_statistics(counts, other, 2, 2, 1).approx_hit_rate == 1.0  # code 1 shares its top bit with 0
    with pytest.raises(PlanError):
        CL.hit_statistics(counts, counts, 2, 0, 1)
    with pytest.raises(PlanError):
        CL.hit_statistics(counts, counts, 2, 2, 3)
