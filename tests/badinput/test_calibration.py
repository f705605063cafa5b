"""Calibration data given to the API: containers, shapes, names, dtypes, values.

Class: calibration follows the rules of ``run`` (:mod:`tvm_mp.inputs`) except that a batch may have any positive
size; each mistake is one-line ``CalibrationError`` naming the batch and the input. Accepted forms give exactly the
ranges the plain list of float32 arrays gives (``calibrate`` is the step ``tvm_mp.compile`` runs first).
"""

import numpy as np

from ._corpus import Case, corpus_tests
from ._models import digits_module, save_digits_module


def _mod(art):
    return digits_module(art)


def _data(art):
    return np.load(art.calib_npy).astype(np.float32)


def _compile(art, make):
    """``tvm_mp.compile`` with ``calibration=make(data)`` (the mistakes are refused before any build)."""
    import tvm_mp

    mod = _mod(art)
    tvm_mp.compile(mod, plan=tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(4, 4)), calibration=make(_data(art)))


def _same_ranges(art, make):
    """``make(data)`` calibrates to exactly the ranges of ``[data[:8], data[8:]]`` (float32)."""
    from tvm_mp.quantize.calibrate import calibrate

    mod = _mod(art)
    data = _data(art)
    want = calibrate(mod, [data[:8], data[8:]], "minmax")
    got = calibrate(mod, make(data), "minmax")
    assert sorted(got) == sorted(want)
    for name in want:
        assert (got[name].lo, got[name].hi) == (want[name].lo, want[name].hi), name
    return len(got)


# calibration makers (module level: cases must pickle) ---------------------------------------------------------

def empty_list(d):
    return []


def empty_generator(d):
    return (x for x in [])


def generator(d):
    return (b for b in (d[:8], d[8:]))


def one_array(d):
    return d


def bare_dict(d):
    return {"input": d}


def an_int(d):
    return 3


def a_string(d):
    return "digits"


def a_path(d):
    from pathlib import Path

    return Path("calib.npy")


def none_batch(d):
    return [d[:8], None]


def wrong_shape(d):
    return [d[:, :, :4, :]]


def wrong_rank(d):
    return [d[:, 0]]


def with_nan(d):
    d = d.copy()
    d[9, 0, 1, 1] = np.nan
    return [d[:8], d[8:]]


def with_inf(d):
    d = d.copy()
    d[0, 0, 0, 0] = -np.inf
    return [d]


def dict_wrong_name(d):
    return [{"image": d}]


def dict_extra_name(d):
    return [{"input": d, "labels": np.zeros(len(d))}]


def dict_empty(d):
    return [{}]


def dicts(d):
    return [{"input": d[:8]}, {"input": d[8:]}]


def mixed_dtypes(d):
    return (d[:8].astype(np.float64), d[8:])


def nested_lists(d):
    return [d[:8].tolist(), d[8:].tolist()]


def complex_batch(d):
    return [d.astype(np.complex64)]


def string_batch(d):
    return [d.astype(str)]


def batch_zero(d):
    return [d[:8], d[:0]]


def scalar_batches(d):
    return [np.float32(0.5)]


def ragged(d):
    return [[[1.0, 2.0], [3.0]]]


CASES = [
    Case("empty-list", _compile, "error", "empty", "CalibrationError", args=(empty_list,)),
    Case("empty-generator", _compile, "error", "empty", "CalibrationError", args=(empty_generator,)),
    Case("generator", _same_ranges, "ok", args=(generator,)),
    Case("one-array-not-a-list", _compile, "error", "not one array", "CalibrationError", args=(one_array,)),
    Case("bare-dict", _compile, "error", "wrap it in a list", "CalibrationError", args=(bare_dict,)),
    Case("an-int", _compile, "error", "iterable of batches", "CalibrationError", args=(an_int,)),
    Case("a-string", _compile, "error", "iterable of batches", "CalibrationError", args=(a_string,)),
    Case("a-path", _compile, "error", "iterable of batches", "CalibrationError", args=(a_path,)),
    Case("none-batch", _compile, "error", "batch 1", "CalibrationError", args=(none_batch,)),
    Case("wrong-shape", _compile, "error", "(batch, 1, 8, 8)", "CalibrationError", args=(wrong_shape,)),
    Case("wrong-rank", _compile, "error", "rank 3", "CalibrationError", args=(wrong_rank,)),
    Case("nan", _compile, "error", "batch 1, input 'input' holds NaN", "CalibrationError", args=(with_nan,)),
    Case("inf", _compile, "error", "Inf", "CalibrationError", args=(with_inf,)),
    Case("dict-wrong-name", _compile, "error", "unknown input", "CalibrationError", args=(dict_wrong_name,)),
    Case("dict-extra-name", _compile, "error", "'labels'", "CalibrationError", args=(dict_extra_name,)),
    Case("dict-empty", _compile, "error", "lacks", "CalibrationError", args=(dict_empty,)),
    Case("dicts", _same_ranges, "ok", args=(dicts,)),
    Case("mixed-dtypes", _same_ranges, "ok", args=(mixed_dtypes,)),
    Case("nested-lists", _same_ranges, "ok", args=(nested_lists,)),
    Case("complex", _compile, "error", "complex", "CalibrationError", args=(complex_batch,)),
    Case("strings", _compile, "error", "strings", "CalibrationError", args=(string_batch,)),
    Case("batch-zero", _compile, "error", "batch 0", "CalibrationError", args=(batch_zero,)),
    Case("scalar-batch", _compile, "error", "rank 0", "CalibrationError", args=(scalar_batches,)),
    Case("ragged-batch", _compile, "error", "NumPy can read", "CalibrationError", args=(ragged,)),
]


outcomes, test_case = corpus_tests(CASES, prepare=save_digits_module)
