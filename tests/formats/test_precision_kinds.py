"""The float and clustered kinds of :class:`tvm_mp.Precision`: presets, validation, short forms, JSON."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvm_mp import Precision, PrecisionPlan
from tvm_mp.errors import PlanError


def float_formats():
    return st.builds(lambda e, m, fn: Precision.float(e, m, fn and e <= 7 and m >= 1),
                     st.integers(2, 8), st.integers(0, 11), st.booleans())


precisions = st.one_of(
    st.builds(Precision, st.integers(1, 8), st.integers(1, 8), st.sampled_from(["auto", "bitserial", "packed"])),
    float_formats(),
    st.builds(Precision.clustered, st.integers(2, 64), st.integers(1, 8)),
)


def test_presets():
    assert Precision.fp16() == Precision(16, 16, "float", 5, 10)
    assert Precision.bf16().format_name == "e8m7" and Precision.bf16().w_bits == 16
    e4m3 = Precision.fp8_e4m3()
    assert (e4m3.exp_bits, e4m3.man_bits, e4m3.finite, e4m3.w_bits, e4m3.a_bits) == (4, 3, True, 8, 8)
    assert str(e4m3) == "e4m3fn" and e4m3.kernel_name == "float:e4m3fn"
    assert Precision.fp8_e5m2().format_name == "e5m2" and not Precision.fp8_e5m2().finite
    k16 = Precision.clustered(16, 8)
    assert (k16.w_bits, k16.a_bits, k16.clusters, k16.kernel_name, str(k16)) == (4, 8, 16, "clustered:K16", "c16a8")
    assert Precision.clustered(5, 4).w_bits == 3 and Precision.clustered(64, 2).w_bits == 6
    assert not Precision.fp16().is_integer and Precision(4, 4).is_integer
    assert Precision(2, 2).kernel_name == "bitserial" and Precision(8, 8).kernel_name == "packed"


@given(precisions)
def test_short_form_and_dict_round_trip(p):
    assert Precision.parse(str(p)) == p
    assert Precision.from_dict(p.to_dict()) == p


@given(st.dictionaries(st.from_regex(r"(conv2d|dense)_[0-9]{1,2}", fullmatch=True), precisions, max_size=10))
def test_mixed_plan_json_round_trip(entries):
    plan = PrecisionPlan(entries)
    assert PrecisionPlan.from_json(plan.to_json()) == plan


def test_integer_precisions_serialize_as_before():
    assert Precision(4, 8).to_dict() == {"w_bits": 4, "a_bits": 8, "kind": "auto"}
    assert Precision.from_dict({"w_bits": 2, "a_bits": 2, "kind": "bitserial"}) == Precision(2, 2, "bitserial")


def test_parse_names():
    assert Precision.parse("FP16") == Precision.fp16()
    assert Precision.parse("bf16") == Precision.bf16()
    assert Precision.parse("fp8_e4m3") == Precision.fp8_e4m3() == Precision.parse("e4m3fn")
    assert Precision.parse("fp8_e5m2") == Precision.parse("e5m2")
    assert Precision.parse("e3m4") == Precision.float(3, 4)
    assert Precision.parse("c16a8") == Precision.clustered(16, 8)
    assert PrecisionPlan({"conv2d_0": "bf16", "dense_0": {"kind": "float", "exp_bits": 4, "man_bits": 3,
                                                          "finite": True}})["dense_0"] == Precision.fp8_e4m3()
    assert Precision.from_dict({"kind": "clustered", "clusters": 8, "a_bits": 6}) == Precision.clustered(8, 6)


@pytest.mark.parametrize("text", ["fp12", "e9m2", "e5m12", "c1a8", "c65a8", "c16a9", "e8m3fn", "e4m3/packed"])
def test_parse_errors(text):
    with pytest.raises(PlanError):
        Precision.parse(text)


@pytest.mark.parametrize("make, message", [
    (lambda: Precision(16, 16), "Precision.fp16"),
    (lambda: Precision(16, 16, "float", 5, 11), "total bits 1 \\+ 5 \\+ 11 = 17"),
    (lambda: Precision(8, 8, "float", 1, 6), "exponent width from 2 to 8"),
    (lambda: Precision(8, 8, "float", 2, 12), "mantissa width from 0 to 11"),
    (lambda: Precision.float(8, 7, finite=True), "exp_bits <= 7"),
    (lambda: Precision(4, 4, exp_bits=2), "belongs to kind 'float' or 'clustered'"),
    (lambda: Precision(4, 4, finite=True), "float formats only"),
    (lambda: Precision(3, 8, "clustered", clusters=16), "ceil\\(log2\\(16\\)\\) = 4"),
    (lambda: Precision.clustered(65), "from 2 to 64"),
    (lambda: Precision.clustered(16, 0), "a_bits=0"),
    (lambda: Precision(8, 8, "float", 4, 3, "yes"), "True or False"),
    (lambda: Precision(8, 8, "cluster"), "float, clustered"),
])
def test_validation_errors_name_the_fix(make, message):
    with pytest.raises(PlanError, match=message):
        make()


def test_from_dict_errors():
    with pytest.raises(PlanError, match="needs exp_bits and man_bits"):
        Precision.from_dict({"kind": "float", "exp_bits": 5})
    with pytest.raises(PlanError, match="needs clusters and a_bits"):
        Precision.from_dict({"kind": "clustered", "a_bits": 8})
    with pytest.raises(PlanError, match="unknown precision field"):
        Precision.from_dict({"kind": "float", "exp_bits": 5, "man_bits": 2, "mantissa": 3})
