"""Clustered weights with precomputed products (the associative-matching idea), defined once in NumPy.

Weights
    Per layer, k-means (scikit-learn ``KMeans``, seeded, fixed ``n_init``) of all the layer's weights to ``K``
    shared values; the centroids are quantized to int8 with one scale per layer (``scale = max|c| / 127``,
    ``c_q = rint(c / scale)``) and every weight then takes the nearest quantized centroid, so the integer weight is
    ``w_q = c_q[idx]`` and ``W ~= scale * w_q``. A layer with at most ``K`` distinct weights keeps them all
    (no k-means). Indices are stored with ``ceil(log2 K)`` bits each, densely packed in one little-endian bit stream
    of uint32 words over the weight in ``(oc, c, ky, kx)`` order (:func:`pack_indices`), plus the ``K`` int8
    centroids.

Products
    Activations are the usual integer codes (``a_bits``, zero point; :mod:`tvm_mp.quantize.scheme`). The kernel
    builds the int32 table ``T[k, q] = c_q[k] * q`` (``K x 2**a_bits``) and computes ``acc = sum_r T[idx[r],
    code[r]]`` by look-up and addition only -- exactly ``sum_r w_q[r] * code[r]``, so the rest is the integer
    epilogue of the scheme (zero-point correction with ``sum(c_q[idx])``, bias correction, float or requantized
    output).

Hit rates of an associative memory (:func:`pair_counts`, :func:`hit_statistics`)
    A processing element keeps ``S`` (weight index, activation code) pairs with their products in a small
    associative memory beside its multiplier. Policy: **static, frequency-ranked** -- the ``S`` pairs most
    frequent on calibration data are loaded once per layer (no replacement at run time); a MAC whose pair is
    among them is a hit (no multiply). The approximate rule matches on the weight index and only the top ``t``
    bits of the activation code (the stored product then stands for ``2**(a_bits - t)`` codes: a statistic of
    how often a coarser match would hit; the kernels never approximate).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import PlanError
from ..precision import VALID_CLUSTERS, index_bits
from ..workload import ConvParams
from .reference import im2col

WORD_BITS = 32
#: k-means restarts (fixed, so a layer's clustering depends only on its weights, K and the seed).
N_INIT = 4
CENTROID_QMAX = 127


@dataclass(frozen=True, eq=False)
class ClusteredWeights:
    """A layer's weights as indices into ``clusters`` int8 centroids with one float32 scale."""

    centroids_q: np.ndarray  # int8 [K'] (K' <= clusters), sorted, distinct
    indices: np.ndarray  # uint8, the weight's shape
    scale: float
    clusters: int

    def __post_init__(self) -> None:
        if self.clusters not in VALID_CLUSTERS:
            raise PlanError(f"clusters={self.clusters!r}: use {VALID_CLUSTERS[0]}..{VALID_CLUSTERS[-1]}")
        if len(self.centroids_q) > self.clusters:
            raise PlanError(f"{len(self.centroids_q)} centroids do not fit {self.clusters} clusters")
        if self.indices.size and int(self.indices.max()) >= len(self.centroids_q):
            raise PlanError("a cluster index points past the centroids")
        object.__setattr__(self, "scale", float(np.float32(self.scale)))

    @property
    def index_bits(self) -> int:
        return index_bits(self.clusters)

    @property
    def w_q(self) -> np.ndarray:
        """The integer weights ``c_q[idx]`` (int8, the weight's shape)."""
        return self.centroids_q[self.indices].astype(np.int8)

    @property
    def table_centroids(self) -> np.ndarray:
        """int8 ``[clusters]``: the centroids padded with zeros to the table's row count."""
        out = np.zeros(self.clusters, np.int8)
        out[: len(self.centroids_q)] = self.centroids_q
        return out

    def packed_indices(self) -> np.ndarray:
        return pack_indices(self.indices.reshape(-1), self.index_bits)

    def storage_bytes(self) -> int:
        """Bytes in the artifact: packed indices plus the int8 centroids."""
        return int(self.packed_indices().nbytes) + self.clusters


def _nearest(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the nearest of the sorted ``levels`` for each value (ties to the lower level)."""
    mids = (levels[1:] + levels[:-1]) / 2.0
    return np.searchsorted(mids, values, side="left").astype(np.uint8)


def cluster_weights(weight: np.ndarray, clusters: int, seed: int = 0, n_init: int = N_INIT) -> ClusteredWeights:
    """k-means of a layer's weights to ``clusters`` shared values, int8 centroids with a per-layer scale."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    if clusters not in VALID_CLUSTERS:
        raise PlanError(f"clusters={clusters!r}: use an integer from {VALID_CLUSTERS[0]} to {VALID_CLUSTERS[-1]}")
    w = np.asarray(weight, dtype=np.float64)
    if not np.isfinite(w).all():
        raise PlanError("weights contain NaN or Inf: the model file is damaged")
    flat = w.reshape(-1)
    distinct = np.unique(flat)
    if len(distinct) <= clusters:
        centers = distinct
    else:
        # one thread: the result does not depend on the core count (OpenMP sums in another order), and a 1-D
        # problem of a few thousand points is ~20x faster without OpenMP's start-up and spin-waiting
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore")  # ConvergenceWarning on near-duplicate weights: the result is still used
            km = KMeans(n_clusters=clusters, n_init=n_init, random_state=seed).fit(flat.reshape(-1, 1))
        centers = np.sort(km.cluster_centers_.reshape(-1))
    top = float(np.abs(centers).max())
    scale = float(np.float32(top / CENTROID_QMAX)) if top > 0 else 1.0
    cq = np.unique(np.clip(np.rint(centers / scale), -CENTROID_QMAX, CENTROID_QMAX)).astype(np.int8)
    idx = _nearest(flat, cq.astype(np.float64) * scale).reshape(w.shape)
    return ClusteredWeights(cq, idx, scale, clusters)


def from_integer_weights(w_q: np.ndarray, scale: float, clusters: int) -> ClusteredWeights:
    """Recover centroids and indices from integer weights that take at most ``clusters`` distinct values."""
    w_q = np.asarray(w_q)
    cq = np.unique(w_q).astype(np.int8)
    if len(cq) > clusters:
        raise PlanError(f"the weights take {len(cq)} distinct values, more than clusters={clusters}: re-run "
                        "QuantizeWeights for this layer")
    return ClusteredWeights(cq, np.searchsorted(cq, w_q).astype(np.uint8), scale, clusters)


def pack_indices(indices: np.ndarray, bits: int) -> np.ndarray:
    """uint32 words of a dense little-endian bit stream: index ``i`` at bits ``[i*bits, (i+1)*bits)``.

    One extra word at the end lets a reader always load two consecutive words.
    """
    v = np.asarray(indices).reshape(-1).astype(np.uint64)
    if v.size and int(v.max()) >= (1 << bits):
        raise PlanError(f"an index does not fit {bits} bits")
    pos = np.arange(v.size, dtype=np.uint64) * np.uint64(bits)
    word = (pos >> np.uint64(5)).astype(np.int64)
    off = pos & np.uint64(31)
    n_words = -(-v.size * bits // WORD_BITS) + 1
    out = np.zeros(n_words + 1, dtype=np.uint64)
    wide = v << off  # up to 32 + 31 bits: low part into `word`, high part into `word + 1`
    np.bitwise_or.at(out, word, wide & np.uint64(0xFFFFFFFF))
    np.bitwise_or.at(out, word + 1, wide >> np.uint64(32))
    return out[:n_words].astype(np.uint32)


def unpack_indices(words: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_indices` (the kernels read the same way): uint8 ``[count]``."""
    w = np.asarray(words, dtype=np.uint64)
    pos = np.arange(count, dtype=np.uint64) * np.uint64(bits)
    word = (pos >> np.uint64(5)).astype(np.int64)
    pair = w[word] | (w[word + 1] << np.uint64(32))
    return ((pair >> (pos & np.uint64(31))) & np.uint64((1 << bits) - 1)).astype(np.uint8)


def product_table(centroids_q: np.ndarray, a_bits: int) -> np.ndarray:
    """int32 ``T[k, q] = c_q[k] * q`` for every centroid and every activation code."""
    return (np.asarray(centroids_q, np.int32)[:, None] * np.arange(1 << a_bits, dtype=np.int32)[None, :])


def conv2d_acc(codes: np.ndarray, cw: ClusteredWeights, params: ConvParams, zero_point: int, a_bits: int
               ) -> np.ndarray:
    """int32 accumulator of a conv2d by table look-up: ``acc = sum_r T[idx[r], code[r]]`` (padding reads the
    zero point)."""
    table = product_table(cw.table_centroids, a_bits)
    oc, cg, kh, kw = cw.indices.shape
    g = params.groups
    cols = im2col(codes, kh, kw, params, zero_point).astype(np.intp)  # [N, G, OH, OW, R]
    idx = cw.indices.reshape(g, oc // g, cg * kh * kw).astype(np.intp)  # [G, Kg, R]
    n, _, oh, ow, rr = cols.shape
    acc = np.zeros((n, g, oc // g, oh, ow), np.int64)
    for r in range(rr):
        acc += table[idx[None, :, :, None, None, r], cols[:, :, None, :, :, r]]
    return acc.reshape(n, oc, oh, ow).astype(np.int32)


def dense_acc(codes: np.ndarray, cw: ClusteredWeights, a_bits: int) -> np.ndarray:
    """int32 ``acc[n, oc] = sum_k T[idx[oc, k], code[n, k]]``."""
    table = product_table(cw.table_centroids, a_bits)
    idx = cw.indices.astype(np.intp)
    c = np.asarray(codes).astype(np.intp)
    acc = np.zeros((c.shape[0], idx.shape[0]), np.int64)
    for k in range(idx.shape[1]):
        acc += table[idx[None, :, k], c[:, None, k]]
    return acc.astype(np.int32)


# ------------------------------------------------------------------------------------------------------------------
# Hit-rate statistics
# ------------------------------------------------------------------------------------------------------------------


def pair_counts(codes: np.ndarray, cw: ClusteredWeights, a_bits: int, params: ConvParams | None = None,
                zero_point: int = 0) -> np.ndarray:
    """int64 ``[clusters, 2**a_bits]``: how many MACs of the layer on ``codes`` multiply centroid k by code q.

    Conv (``params`` given): every (output pixel, output channel, reduction index) of every sample, padding
    positions included (they read the zero point). Dense: every (sample, output, k).
    """
    q = 1 << a_bits
    if params is None:
        g, rr = 1, cw.indices.shape[1]
        code_rows = np.asarray(codes).astype(np.int64)[:, None, :]  # [N, 1, R]
        idx = cw.indices.reshape(1, -1, rr)
    else:
        oc, cg, kh, kw = cw.indices.shape
        g, rr = params.groups, cg * kh * kw
        cols = im2col(codes, kh, kw, params, zero_point)  # [N, G, OH, OW, R]
        code_rows = cols.transpose(0, 2, 3, 1, 4).reshape(-1, g, rr).astype(np.int64)
        idx = cw.indices.reshape(g, oc // g, rr)
    gr = (np.arange(g)[:, None] * rr + np.arange(rr)[None, :]).astype(np.int64)  # [G, R]
    code_hist = np.bincount((gr[None] * q + code_rows).reshape(-1), minlength=g * rr * q).reshape(g, rr, q)
    k = cw.clusters
    idx_hist = np.bincount((gr[:, None, :] * k + idx.astype(np.int64)).reshape(-1),
                           minlength=g * rr * k).reshape(g, rr, k)
    return np.einsum("grk,grq->kq", idx_hist.astype(np.int64), code_hist.astype(np.int64))


def coarse_counts(counts: np.ndarray, a_bits: int, top_bits: int) -> np.ndarray:
    """Pair counts keyed on the top ``top_bits`` bits of the activation code only."""
    if not (1 <= top_bits <= a_bits):
        raise PlanError(f"top_bits={top_bits} must be in 1..{a_bits}")
    k = counts.shape[0]
    return counts.reshape(k, 1 << top_bits, 1 << (a_bits - top_bits)).sum(axis=2)


def top_entries(counts: np.ndarray, entries: int) -> np.ndarray:
    """Flat indices of the ``entries`` most frequent pairs (ties: lower flat index first; deterministic)."""
    flat = counts.reshape(-1)
    order = np.lexsort((np.arange(flat.size), -flat))
    return order[:entries]


@dataclass(frozen=True)
class HitStats:
    """Hit rates of a static associative memory of ``entries`` pairs on one layer.

    ``exact_hit_rate``: fraction of MACs whose (weight index, activation code) pair is stored.
    ``approx_hit_rate``: the same when pairs match on the weight index and the top ``top_bits`` bits of the code.
    ``zero_code_rate``: fraction of MACs whose activation is real zero (shown for context: a zero-skipping PE
    saves those too). The stored pairs are chosen on one data set (``fit``) and counted on another (``eval``).
    """

    macs: int
    entries: int
    top_bits: int
    exact_hit_rate: float
    approx_hit_rate: float
    zero_code_rate: float

    def __post_init__(self) -> None:
        for name in ("exact_hit_rate", "approx_hit_rate", "zero_code_rate"):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0):
                raise ValueError(f"HitStats.{name}={value} is not a fraction")


def hit_statistics(fit_counts: np.ndarray, eval_counts: np.ndarray, a_bits: int, entries: int, top_bits: int,
                   zero_point: int = 0) -> HitStats:
    """Hit rates of the ``entries`` most frequent pairs of ``fit_counts``, measured on ``eval_counts``."""
    if entries < 1:
        raise PlanError(f"an associative memory needs at least one entry, got {entries}")
    total = int(eval_counts.sum())
    if total == 0:
        return HitStats(0, entries, top_bits, 0.0, 0.0, 0.0)
    exact = top_entries(fit_counts, entries)
    coarse_fit = coarse_counts(fit_counts, a_bits, top_bits)
    coarse = top_entries(coarse_fit, entries)
    hits = int(eval_counts.reshape(-1)[exact].sum())
    approx_hits = int(coarse_counts(eval_counts, a_bits, top_bits).reshape(-1)[coarse].sum())
    zeros = int(eval_counts[:, zero_point].sum())
    return HitStats(total, entries, top_bits, hits / total, approx_hits / total, zeros / total)
