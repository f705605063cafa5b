"""Virtual quantization: n-bit integer weights packed into 8/16/32-bit words for cores without sub-byte types.

The layout (it differs from :mod:`tvm_mp.quantize.packing`, which serves the TVM kernels):

* A weight ``[OC, ...]`` is read as rows ``[OC, R]`` in the reduction order of :mod:`tvm_mp.quantize.reference`
  (``r = (c * KH + ky) * KW + kx`` for a conv, ``k`` for a dense layer).
* Each row starts on a word boundary and is packed along the reduction axis, ``P = word_bits // w_bits`` weights
  per word (no weight straddles two words; the top ``word_bits - P * w_bits`` bits of a word are 0).
  Weight ``r`` of a row is in word ``r // P`` at bits ``[(r % P) * w_bits, (r % P + 1) * w_bits)``
  (least significant first); words are stored little-endian, as the Cortex-M reads them.
* A field holds the weight in two's complement of ``w_bits`` bits, so a sign extension (``SBFX`` on ARMv7-M, or
  a left shift then an arithmetic right shift) recovers it. One bit holds the sign bit of a {-1, +1} weight
  (1 for -1): the sign-extended field ``s`` is 0 or -1 and the weight is ``2 * s + 1``.
* 8-bit weights in this layout are byte-for-byte a plain ``int8`` array, whatever the word size (the baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PlanError
from ..quantize.scheme import weight_qrange

#: Word sizes a row may be packed into.
WORD_BITS_CHOICES = (8, 16, 32)
_NP_WORD = {8: np.uint8, 16: np.uint16, 32: np.uint32}
_C_WORD = {8: "uint8_t", 16: "uint16_t", 32: "uint32_t"}


@dataclass(frozen=True)
class VqFormat:
    """Storage of one layer's weights: ``w_bits`` (1..8) per weight, rows packed into ``word_bits`` words."""

    w_bits: int
    word_bits: int = 32

    def __post_init__(self) -> None:
        if not (isinstance(self.w_bits, int) and 1 <= self.w_bits <= 8):
            raise PlanError(f"MCU weight bits must be an integer in 1..8, got {self.w_bits!r}")
        if self.word_bits not in WORD_BITS_CHOICES:
            raise PlanError(f"MCU word size must be one of {WORD_BITS_CHOICES} bits, got {self.word_bits!r}")

    @property
    def per_word(self) -> int:
        """Weights per word."""
        return self.word_bits // self.w_bits

    @property
    def word_bytes(self) -> int:
        return self.word_bits // 8

    @property
    def c_word(self) -> str:
        """C type of one stored word (``int8_t`` for 8-bit weights: the baseline layout)."""
        return "int8_t" if self.w_bits == 8 else _C_WORD[self.word_bits]

    @property
    def tag(self) -> str:
        """Short name used in C identifiers, e.g. ``b3w32``."""
        return f"b{self.w_bits}w{self.word_bits}"

    def words_per_row(self, r: int) -> int:
        return -(-r // self.per_word)

    def row_elems(self, r: int) -> int:
        """C array elements of one row (words, or bytes for 8-bit weights)."""
        return self.row_bytes(r) if self.w_bits == 8 else self.words_per_row(r)

    def row_bytes(self, r: int) -> int:
        """Bytes of one packed row of ``r`` weights (8-bit rows are padded to whole words too)."""
        return self.words_per_row(r) * self.word_bytes

    def weight_bytes(self, out_channels: int, r: int) -> int:
        """Bytes of a packed ``[out_channels, r]`` weight."""
        return out_channels * self.row_bytes(r)

    def pack(self, w_q: np.ndarray) -> np.ndarray:
        """``[OC, words_per_row]`` array of words (uint8/16/32; int8 ``[OC, row_bytes]`` for 8-bit weights)."""
        rows = np.asarray(w_q).reshape(np.shape(w_q)[0], -1).astype(np.int64)
        lo, hi = weight_qrange(self.w_bits)
        bad = (rows < lo) | (rows > hi) | ((rows == 0) & (self.w_bits == 1))
        if bad.any():
            raise PlanError(f"weights outside the {self.w_bits}-bit range {lo}..{hi}"
                            f"{' (and not 0)' if self.w_bits == 1 else ''}: quantize them with this bit width first")
        oc, r = rows.shape
        if self.w_bits == 8:
            out = np.zeros((oc, self.row_bytes(r)), dtype=np.int8)
            out[:, :r] = rows
            return out
        fields = (rows < 0).astype(np.uint64) if self.w_bits == 1 else (rows & ((1 << self.w_bits) - 1)).astype(
            np.uint64)
        per, words = self.per_word, self.words_per_row(r)
        padded = np.zeros((oc, words * per), dtype=np.uint64)
        padded[:, :r] = fields
        shifts = (np.arange(per, dtype=np.uint64) * np.uint64(self.w_bits))
        packed = (padded.reshape(oc, words, per) << shifts).sum(axis=2, dtype=np.uint64)
        return packed.astype(_NP_WORD[self.word_bits])

    def unpack(self, words: np.ndarray, r: int) -> np.ndarray:
        """Inverse of :meth:`pack`: int8 ``[OC, r]`` (what the C kernels decode)."""
        words = np.asarray(words)
        if self.w_bits == 8:
            return words[:, :r].astype(np.int8)
        oc = words.shape[0]
        shifts = np.arange(self.per_word, dtype=np.int64) * self.w_bits
        fields = (words.astype(np.int64)[:, :, None] >> shifts) & ((1 << self.w_bits) - 1)
        fields = fields.reshape(oc, -1)[:, :r]
        signed = np.where(fields >= (1 << (self.w_bits - 1)), fields - (1 << self.w_bits), fields)
        return (2 * signed + 1 if self.w_bits == 1 else signed).astype(np.int8)
