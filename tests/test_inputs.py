"""tvm_mp.inputs: the input rules on plain NumPy (no model needed; the corpus in tests/badinput/ runs them through
run, reference, calibration and the search)."""

import numpy as np
import pytest

from tvm_mp.errors import CalibrationError, InputShapeError, InputValueError
from tvm_mp.inputs import InputSpec, as_specs, bind_inputs, check_inputs

IMAGE = InputSpec("x", (2, 1, 4, 4))
INDEX = InputSpec("idx", (3,), "int64")


def test_spec_validates_and_normalizes():
    assert InputSpec("x", (1, np.int64(3)), np.float32) == InputSpec("x", (1, 3), "float32")
    with pytest.raises(ValueError):
        InputSpec("", (1,))
    with pytest.raises(ValueError):
        InputSpec("x", (1.5,))
    assert as_specs([(1, 2)]) == [InputSpec("input 0", (1, 2))]


def test_bind_by_position_dict_or_keywords():
    a, b = np.zeros((2, 1, 4, 4)), np.zeros(3, np.int64)
    assert bind_inputs((a, b), {}, [IMAGE, INDEX])[1] is b
    assert bind_inputs(({"idx": b, "x": a},), {}, [IMAGE, INDEX])[0] is a
    assert bind_inputs((), {"idx": b, "x": a}, [IMAGE, INDEX])[1] is b
    for inputs, named, match in [((a,), {}, "takes 2 input"), ((a,), {"idx": b}, "not both"),
                                 (({"x": a},), {}, "'idx' missing"), (({"x": a, "idx": b, "y": a},), {}, "'y'"),
                                 (({},), {}, "missing")]:
        with pytest.raises(InputShapeError, match=match):
            bind_inputs(inputs, named, [IMAGE, INDEX])


def test_batch_rules():
    idx = np.arange(3)
    out = check_inputs([np.ones((4, 1, 4, 4)), idx], [IMAGE, INDEX])
    assert out[0].dtype == np.float32 and out[1].dtype == np.int64 and out[0].flags.c_contiguous
    with pytest.raises(InputShapeError, match="not a multiple of the compiled batch 2"):
        check_inputs([np.ones((3, 1, 4, 4)), idx], [IMAGE, INDEX])
    assert check_inputs([np.ones((3, 1, 4, 4)), idx], [IMAGE, INDEX], multiple=False)[0].shape[0] == 3
    with pytest.raises(InputShapeError, match="batch 0"):
        check_inputs([np.ones((0, 1, 4, 4)), idx], [IMAGE, INDEX])
    with pytest.raises(InputShapeError, match=r"expected exactly \(3,\)"):
        check_inputs([np.ones((2, 1, 4, 4)), np.arange(6)], [IMAGE, INDEX])
    twin = InputSpec("y", (2, 5))
    with pytest.raises(InputShapeError, match="same batch"):
        check_inputs([np.ones((4, 1, 4, 4)), np.ones((2, 5))], [IMAGE, twin])


@pytest.mark.parametrize("value, match", [
    (np.full((2, 1, 4, 4), np.nan), "NaN at index (0, 0, 0, 0) (32 non-finite"),
    (np.full((2, 1, 4, 4), 1e300), "beyond its range"),
    (np.ones((2, 1, 4, 4), np.complex64), "complex"),
    (np.ones((2, 1, 4, 4)).astype(str), "strings"),
    (None, "got NoneType"),
])
def test_values_refused(value, match):
    with pytest.raises(InputValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        check_inputs([value], [IMAGE])


def test_integer_inputs_keep_their_type():
    spec = InputSpec("img", (1, 2), "uint8")
    assert check_inputs([[[0, 255]]], [spec])[0].dtype == np.uint8
    with pytest.raises(InputValueError, match=r"outside its range \[0, 255\]"):
        check_inputs([np.array([[0, 256]])], [spec])
    with pytest.raises(InputValueError, match="float values"):
        check_inputs([np.array([[0.0, 1.0]])], [spec])
    with pytest.raises(CalibrationError, match="batch 3, input 'img'"):
        check_inputs([np.array([[0.5, 1.0]])], [spec], where="batch 3, ", value_error=CalibrationError)


def test_layouts_give_the_same_array():
    x = np.arange(64, dtype=np.float64).reshape(2, 1, 4, 8)[..., ::2]
    got = check_inputs([np.asfortranarray(x)], [IMAGE])[0]
    assert got.flags.c_contiguous and np.array_equal(got, x.astype(np.float32))
