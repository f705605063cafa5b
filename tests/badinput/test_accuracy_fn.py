"""``accuracy_fn`` returning what it should not, or raising.

Class: it must return one finite real (any range: higher is better, a percentage is fine); anything else is one
line naming accuracy_fn, and an exception it raises surfaces as one-line ``Error`` naming accuracy_fn with the
user's exception chained as ``__cause__``. Both places that call it are covered: a compile (``driver.score``, the
last step of ``tvm_mp.compile``; most cases call it on the loaded model, two run the whole compile) and a search
(``Scorer.score``, which ``compile(budget=...)`` and ``explore`` use).
"""

import numpy as np

from ._corpus import Case, corpus_tests
from ._models import digits_module, loaded, samples, save_digits_module

# accuracy functions (module level: cases must pickle) ---------------------------------------------------------

def returns_none(model):
    return None


def returns_nan(model):
    return float("nan")


def returns_inf(model):
    return np.inf


def returns_string(model):
    return "0.9"


def returns_array(model):
    return np.array([0.5, 0.7])


def returns_0d_array(model):
    return np.array(0.75)


def returns_float32(model):
    return np.float32(0.5)


def returns_percent(model):
    return 95.0


def returns_negative(model):
    return -0.25


def returns_int(model):
    return 1


def returns_bool(model):
    return True


def returns_complex(model):
    return 0.9 + 0j


def returns_dict(model):
    return {"top1": 0.9}


def returns_tuple(model):
    return (0.9,)


def raises(model):
    raise ValueError("labels not found\nsecond line of the message")


def takes_nothing():
    return 1.0


def runs_badly(model):
    return float(np.mean(model.run(np.zeros((2, 3, 8, 8), np.float32))))


def runs_well(model):
    x = np.zeros((2, 1, 8, 8), np.float32)
    return float(np.mean(model.run(x).argmax(axis=1) == 0))


NOT_CALLABLE = 0.9


def _score(art, fn, expected=None):
    """``driver.score``, as ``tvm_mp.compile(..., accuracy_fn=fn)`` ends, on the loaded model."""
    from tvm_mp.driver import score

    model = score(loaded(art), fn)
    if expected is not None:
        assert model.report.accuracy == expected, model.report.accuracy
        assert isinstance(model.report.accuracy, float)
    return model.report.accuracy


def _chained(art, fn, where="score"):
    """The user's exception is the Error's ``__cause__``."""
    import tvm_mp

    try:
        (_score if where == "score" else _scorer)(art, fn)
    except tvm_mp.Error as err:
        assert isinstance(err.__cause__, ValueError), repr(err.__cause__)
        raise
    raise AssertionError("accepted")


def _scorer(art, fn, expected=None):
    """``Scorer.score`` (the search's): accuracy_fn gets the plan's reference model."""
    import tvm_mp
    from tvm_mp.search.accuracy import Scorer

    mod = digits_module(art)
    scorer = Scorer(mod, [samples(art, 8)], accuracy_fn=fn)
    value = scorer.score(tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(8, 8)))
    if expected is not None:
        assert value == expected, value
    return value


def _compile(art, fn):
    import tvm_mp

    mod = digits_module(art)
    model = tvm_mp.compile(mod, plan=tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(8, 8)),
                           calibration=[np.load(art.calib_npy)], accuracy_fn=fn)
    return model.report.accuracy


CASES = [
    Case("returns-none", _score, "error", "returned None", args=(returns_none,)),
    Case("returns-nan", _score, "error", "returned nan", args=(returns_nan,)),
    Case("returns-inf", _score, "error", "returned inf", args=(returns_inf,)),
    Case("returns-string", _score, "error", "'0.9'", args=(returns_string,)),
    Case("returns-array", _score, "error", "array of shape (2,)", args=(returns_array,)),
    Case("returns-bool", _score, "error", "returned True", args=(returns_bool,)),
    Case("returns-complex", _score, "error", "complex", args=(returns_complex,)),
    Case("returns-dict", _score, "error", "dict", args=(returns_dict,)),
    Case("returns-tuple", _score, "error", "tuple", args=(returns_tuple,)),
    Case("returns-0d-array", _score, "ok", args=(returns_0d_array, 0.75)),
    Case("returns-numpy-float32", _score, "ok", args=(returns_float32, 0.5)),
    Case("returns-percent", _score, "ok", args=(returns_percent, 95.0)),
    Case("returns-negative", _score, "ok", args=(returns_negative, -0.25)),
    Case("returns-int", _score, "ok", args=(returns_int, 1.0)),
    Case("raises-chained", _chained, "error", "accuracy_fn (raises) raised ValueError", args=(raises,)),
    Case("takes-no-argument", _score, "error", "TypeError", args=(takes_nothing,)),
    Case("not-callable", _score, "error", "must be a function", args=(NOT_CALLABLE,)),
    Case("runs-model-badly", _score, "error", "(batch, 1, 8, 8)", args=(runs_badly,)),
    Case("runs-model-well", _score, "ok", args=(runs_well,)),
    Case("scorer-returns-string", _scorer, "error", "'0.9'", args=(returns_string,)),
    Case("scorer-returns-array", _scorer, "error", "array of shape", args=(returns_array,)),
    Case("scorer-raises-chained", _chained, "error", "accuracy_fn", args=(raises, "scorer")),
    Case("scorer-runs-model-badly", _scorer, "error", "(batch, 1, 8, 8)", args=(runs_badly,)),
    Case("scorer-returns-percent", _scorer, "ok", args=(returns_percent, 95.0)),
    Case("compile-raises", _compile, "error", "accuracy_fn (raises) raised ValueError", args=(raises,)),
]


outcomes, test_case = corpus_tests(CASES, prepare=save_digits_module)
