"""Small real data sets bundled with the package, for accuracy checks and calibration.

The only data set is scikit-learn's copy of the UCI optical hand-written digits: 1,797 real 8x8
grey-scale images of the digits 0-9, shipped inside scikit-learn so nothing is downloaded.

The held-out split is fixed so that every accuracy number in the project refers to the same
images: a stratified split with 20 % of the images held out for testing, made by
``sklearn.model_selection.train_test_split(..., test_size=0.2, stratify=y, random_state=0)``.
That gives 1,437 training and 360 test images on every machine. Calibration data (for choosing
quantisation ranges) is drawn from the training part only, so that test accuracy is never measured
on images the quantiser has seen.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .errors import CalibrationError

#: Fraction of the images held out for testing.
TEST_FRACTION = 0.2
#: ``random_state`` of the train/test split; changing it changes every recorded accuracy.
SPLIT_SEED = 0
#: Pixel values in scikit-learn's digits run from 0 to this value.
PIXEL_MAX = 16.0
#: Shape of one image in NCHW layout, without the batch dimension.
IMAGE_SHAPE = (1, 8, 8)
#: Number of classes (the digits 0-9).
NUM_CLASSES = 10


@dataclass(frozen=True, eq=False)
class DigitsSplit:
    """The fixed train/test split of the digits images.

    Images are float32 in NCHW layout ``(N, 1, 8, 8)`` scaled to [0, 1]; labels are int64 in 0-9.
    The arrays are read-only because they are shared between calls (copy them to modify).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=1)
def _load_split() -> DigitsSplit:
    """Load and split the images once per process; the result is cached because it never changes."""
    # Imported here so that importing tvm_mp.datasets stays cheap.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (np.asarray(digits.images, dtype=np.float32) / np.float32(PIXEL_MAX)).reshape(-1, *IMAGE_SHAPE)
    y = np.asarray(digits.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    arrays = [np.ascontiguousarray(a) for a in (x_train, y_train, x_test, y_test)]
    for a in arrays:
        a.setflags(write=False)
    return DigitsSplit(*arrays)


def load_digits_split() -> DigitsSplit:
    """Return the fixed, stratified 80/20 train/test split of scikit-learn's digits images.

    The split is identical on every call and every machine (see the module docstring), so
    accuracies measured on ``x_test`` are comparable across runs.
    """
    return _load_split()


def calibration_batches(n_batches: int, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """Return ``n_batches`` float32 arrays of shape ``(batch_size, 1, 8, 8)`` of training images.

    The images are distinct, drawn without replacement from the TRAINING part only (never the
    test part, so calibration cannot leak into measured accuracy), in an order fixed by ``seed``.
    The arrays are fresh, writable copies.
    """
    if n_batches < 1 or batch_size < 1:
        raise CalibrationError(f"n_batches and batch_size must be at least 1, got {n_batches} and {batch_size}")
    x_train = load_digits_split().x_train
    needed = n_batches * batch_size
    if needed > len(x_train):
        raise CalibrationError(
            f"asked for {n_batches} x {batch_size} = {needed} calibration images but the training "
            f"split has only {len(x_train)}; ask for fewer"
        )
    order = np.random.default_rng(seed).permutation(len(x_train))[:needed]
    return [np.array(x_train[order[i * batch_size : (i + 1) * batch_size]]) for i in range(n_batches)]
