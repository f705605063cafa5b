"""Bad precisions and plans through the API and the CLI. Class: strict types for bit-widths."""

import pytest

from ._corpus import Case, cli_case, judge, run_cases


def _precision(art, w_bits, a_bits):
    import tvm_mp

    return repr(tvm_mp.Precision(w_bits, a_bits))


CASES = [
    Case("precision-ok", _precision, "ok", args=(4, 4)),
    Case("precision-w9", _precision, "error", "1 to 8", args=(9, 4)),
    Case("precision-bool", _precision, "error", "w_bits", args=(True, 4)),
    Case("precision-float", _precision, "error", "w_bits", args=(4.7, 4)),
    Case("precision-str", _precision, "error", "w_bits", args=("4", 4)),
    Case("precision-huge", _precision, "error", "", args=(1e400, 4)),
    cli_case("cli-plan-w9", ["compile", "{onnx}", "--shape", "input=1,1,8,8", "--plan", "w9a4",
                             "--calibration", "digits", "-o", "{scratch}/out"], "1 to 8"),
]


@pytest.fixture(scope="module")
def outcomes(isolator, art):
    return run_cases(isolator, art, CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(case, outcomes):
    judge(case, outcomes[case.id])
