"""Storage formats of quantized weights, in NumPy (the compiler packs constants with these functions).

Reduction order: a conv weight ``[OC, Cg, KH, KW]`` is read as ``[OC, R]`` with ``r = (c * KH + ky) * KW + kx``;
a dense weight is ``[OC, K]``.

Bit-planes (bit-serial kernels): ``planes[oc, i, word]`` is a uint32 whose bit ``t`` is bit ``i`` of weight
``r = 32 * word + t`` (bits past R are 0). ``b >= 2`` bits use two's complement planes, so
``w = sum_i coef[i] * plane_i`` with ``coef = [1, 2, ..., 2**(b-2), -2**(b-1)]``. One bit stores ``(w + 1) / 2``,
so ``w = 2 * plane_0 - 1``: ``coef = [2]`` and an offset of ``-1`` times the sum of the activations.

Dense packing (packed-integer kernels): each weight in a container of ``cw`` bits (1, 2, 4 or 8: the next power of
two >= b), two's complement (one bit: ``(w + 1) / 2``), ``8 // cw`` weights per byte, weight ``r`` in byte
``r // (8 // cw)`` at bit ``(r % (8 // cw)) * cw``.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 32


def container_bits(bits: int) -> int:
    return 1 if bits == 1 else 2 if bits == 2 else 4 if bits <= 4 else 8


def plane_coefficients(bits: int) -> tuple[np.ndarray, int]:
    """``(coef int32 [planes], offset)`` such that ``w = sum_i coef[i] * plane_i + offset``."""
    if bits == 1:
        return np.array([2], dtype=np.int32), -1
    coef = [1 << i for i in range(bits - 1)] + [-(1 << (bits - 1))]
    return np.array(coef, dtype=np.int32), 0


def _as_rows(w_q: np.ndarray) -> np.ndarray:
    return np.asarray(w_q).reshape(w_q.shape[0], -1).astype(np.int32)


def pack_bits_rows(bits01: np.ndarray) -> np.ndarray:
    """Pack a 0/1 array ``[..., R]`` into uint32 words ``[..., ceil(R/32)]`` (bit t of word w = element 32w+t)."""
    r = bits01.shape[-1]
    words = -(-r // WORD_BITS)
    padded = np.zeros(bits01.shape[:-1] + (words * WORD_BITS,), dtype=np.uint64)
    padded[..., :r] = bits01
    padded = padded.reshape(bits01.shape[:-1] + (words, WORD_BITS))
    weights = np.left_shift(np.uint64(1), np.arange(WORD_BITS, dtype=np.uint64))
    return (padded * weights).sum(axis=-1).astype(np.uint32)


def weight_bitplanes(w_q: np.ndarray, bits: int) -> np.ndarray:
    """uint32 ``[OC, planes, ceil(R/32)]`` bit-planes of integer weights."""
    rows = _as_rows(w_q)
    if bits == 1:
        u = (rows + 1) // 2
        return pack_bits_rows(u[:, None, :])
    u = rows & ((1 << bits) - 1)  # two's complement in `bits` bits
    planes = np.stack([(u >> i) & 1 for i in range(bits)], axis=1)
    return pack_bits_rows(planes)


def unpack_bitplanes(planes: np.ndarray, bits: int, r: int) -> np.ndarray:
    """Inverse of :func:`weight_bitplanes` (for tests): int32 ``[OC, R]``."""
    coef, offset = plane_coefficients(bits)
    shifts = np.arange(WORD_BITS, dtype=np.uint32)
    b = ((planes[..., None] >> shifts) & 1).reshape(planes.shape[0], planes.shape[1], -1)[..., :r].astype(np.int32)
    return (b * coef[None, :, None]).sum(axis=1) + offset


def pack_dense(w_q: np.ndarray, bits: int) -> np.ndarray:
    """uint8 ``[OC, ceil(R / (8 // cw))]`` densely packed integer weights."""
    rows = _as_rows(w_q)
    cw = container_bits(bits)
    per = 8 // cw
    u = (rows + 1) // 2 if bits == 1 else rows & ((1 << cw) - 1)
    r = rows.shape[1]
    nbytes = -(-r // per)
    padded = np.zeros((rows.shape[0], nbytes * per), dtype=np.int32)
    padded[:, :r] = u
    padded = padded.reshape(rows.shape[0], nbytes, per)
    shifts = (np.arange(per) * cw).astype(np.int32)
    return (padded << shifts).sum(axis=-1).astype(np.uint8)


def unpack_dense(packed: np.ndarray, bits: int, r: int) -> np.ndarray:
    """Inverse of :func:`pack_dense` (for tests): int32 ``[OC, R]``."""
    cw = container_bits(bits)
    per = 8 // cw
    shifts = (np.arange(per) * cw).astype(np.int32)
    v = ((packed.astype(np.int32)[..., None] >> shifts) & ((1 << cw) - 1)).reshape(packed.shape[0], -1)[:, :r]
    if bits == 1:
        return 2 * v - 1
    return v - ((v >> (cw - 1)) << cw)
