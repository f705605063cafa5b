"""C literals are exact: a float32 written as C text reads back as the same bits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvm_mp.errors import PlanError
from tvm_mp.mcu.cgen import c_array, c_float, c_ident, check_ident


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float_literal_is_exact(value):
    text = c_float(value)
    assert text.endswith("f")
    back = np.float32(float.fromhex(text[:-1]))
    assert back.view(np.uint32) == np.float32(value).view(np.uint32)


def test_array_literals():
    text = c_array("w", "uint32_t", np.array([1, 0xFFFFFFFF], dtype=np.uint32))
    assert "0x00000001u, 0xffffffffu" in text and "w[2]" in text
    assert "(-2147483647 - 1)" in c_array("m", "int32_t", np.array([-(2**31)], dtype=np.int64))


def test_identifiers():
    assert c_ident("block1/dw.conv") == "block1_dw_conv"
    assert c_ident("0x") == "_0x"
    with pytest.raises(PlanError, match="C identifier"):
        check_ident("a-b")
