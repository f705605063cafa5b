"""The bundled digits split is fixed, stratified, well-scaled, and calibration never touches the test part."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_mp.datasets import DigitsSplit, calibration_batches, load_digits_split
from tvm_mp.errors import CalibrationError


def _row_set(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in x.reshape(len(x), -1)}


def test_split_sizes_shapes_and_dtypes():
    split = load_digits_split()
    assert isinstance(split, DigitsSplit)
    assert split.x_train.shape == (1437, 1, 8, 8)
    assert split.x_test.shape == (360, 1, 8, 8)
    assert split.y_train.shape == (1437,) and split.y_test.shape == (360,)
    assert split.x_train.dtype == np.float32 and split.x_test.dtype == np.float32
    assert split.y_train.dtype == np.int64 and split.y_test.dtype == np.int64


def test_values_in_unit_range_and_labels_are_digits():
    split = load_digits_split()
    for x in (split.x_train, split.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
        # pixels were integers 0..16, so every value is a multiple of 1/16
        assert np.array_equal(x * 16, np.round(x * 16))
    assert set(np.unique(split.y_train)) == set(range(10))
    assert set(np.unique(split.y_test)) == set(range(10))


def test_split_is_deterministic_and_matches_sklearn():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    a = load_digits_split()
    digits = load_digits()
    _, _, y_train, y_test = train_test_split(
        digits.images, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    assert np.array_equal(a.y_train, y_train) and np.array_equal(a.y_test, y_test)
    b = load_digits_split()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, name), getattr(b, name))


def test_split_is_stratified_and_disjoint():
    split = load_digits_split()
    train_frac = np.bincount(split.y_train, minlength=10) / len(split.y_train)
    test_frac = np.bincount(split.y_test, minlength=10) / len(split.y_test)
    assert np.abs(train_frac - test_frac).max() < 0.01
    # the digits set holds no duplicate images, so train and test share none
    assert not _row_set(split.x_train) & _row_set(split.x_test)


def test_split_arrays_are_read_only():
    split = load_digits_split()
    with pytest.raises(ValueError):
        split.x_train[0, 0, 0, 0] = 5.0


def test_calibration_batches_come_from_train_only():
    split = load_digits_split()
    batches = calibration_batches(4, 16)
    assert len(batches) == 4
    assert all(b.shape == (16, 1, 8, 8) and b.dtype == np.float32 for b in batches)
    rows = _row_set(np.concatenate(batches))
    assert len(rows) == 64  # drawn without replacement
    assert rows <= _row_set(split.x_train)
    assert not rows & _row_set(split.x_test)


def test_calibration_batches_are_deterministic_per_seed():
    a = calibration_batches(3, 8)
    b = calibration_batches(3, 8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = calibration_batches(3, 8, seed=1)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    a[0][...] = -1.0  # fresh copies: writing to one must not change the next call's result
    assert calibration_batches(3, 8)[0].min() >= 0.0


def test_calibration_batches_reject_impossible_requests():
    with pytest.raises(CalibrationError):
        calibration_batches(100, 100)
    with pytest.raises(CalibrationError):
        calibration_batches(0, 8)
