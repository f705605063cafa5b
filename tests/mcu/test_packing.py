"""Virtual-quantization weight packing: exact round trips, the documented bit layout, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_mp.errors import PlanError
from tvm_mp.mcu.packing import WORD_BITS_CHOICES, VqFormat
from tvm_mp.quantize.scheme import weight_qrange


def random_weights(rng, shape, bits):
    lo, hi = weight_qrange(bits)
    w = rng.integers(lo, hi + 1, shape)
    return np.where(w >= 0, 1, -1) if bits == 1 else w


@settings(max_examples=200)
@given(bits=st.integers(1, 8), word_bits=st.sampled_from(WORD_BITS_CHOICES), oc=st.integers(1, 5),
       r=st.integers(1, 100), seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip_and_size(bits, word_bits, oc, r, seed):
    fmt = VqFormat(bits, word_bits)
    w = random_weights(np.random.default_rng(seed), (oc, r), bits)
    packed = fmt.pack(w)
    assert packed.shape == (oc, fmt.row_elems(r))
    assert packed.nbytes == fmt.weight_bytes(oc, r) == oc * -(-r // fmt.per_word) * (word_bits // 8)
    np.testing.assert_array_equal(fmt.unpack(packed, r), w)


def test_bit_layout_is_lsb_first_twos_complement():
    w = np.array([[1, -1, 3, -3, 0, 2, -2, 1, -1, 3, 2]])  # 11 weights: 10 fill a 32-bit word at 3 bits
    packed = VqFormat(3, 32).pack(w)
    fields = [v & 7 for v in w[0]]
    assert int(packed[0, 0]) == sum(f << (3 * k) for k, f in enumerate(fields[:10]))
    assert int(packed[0, 1]) == fields[10]
    assert packed.dtype == np.uint32


def test_one_bit_stores_the_sign_bit():
    packed = VqFormat(1, 8).pack(np.array([[1, -1, -1, 1, 1, 1, 1, -1, -1]]))
    assert packed.tolist() == [[0b10000110, 0b1]]


def test_eight_bit_is_the_plain_int8_array():
    w = np.array([[-127, 5, 127], [0, -1, 3]])
    for word_bits in WORD_BITS_CHOICES:
        packed = VqFormat(8, word_bits).pack(w)
        assert packed.dtype == np.int8
        np.testing.assert_array_equal(packed[:, :3], w)


@pytest.mark.parametrize("bits,bad", [(3, 4), (2, -2), (1, 0), (8, -128)])
def test_out_of_range_weights_are_refused(bits, bad):
    with pytest.raises(PlanError, match="range"):
        VqFormat(bits).pack(np.array([[bad]]))


@pytest.mark.parametrize("bits,word_bits", [(0, 32), (9, 32), (4, 24)])
def test_invalid_format(bits, word_bits):
    with pytest.raises(PlanError):
        VqFormat(bits, word_bits)
