"""Bad budgets: ``Budget(...)``, ``compile(budget=...)``, ``explore(budgets=..., axes=..., seed=...)`` and the
budget flags of the CLI. Each is refused with one line before any search runs."""

from functools import partial

import numpy as np

from ._corpus import Case, cli_case, corpus_tests
from ._models import digits_module, save_digits_module


def _budget(art, **limits):
    import tvm_mp

    budget = tvm_mp.Budget(**limits)
    for name, value in limits.items():
        assert type(getattr(budget, name)) is float and getattr(budget, name) == float(value), budget
    return repr(budget)


def _explore(art, **kwargs):
    """explore's arguments are checked before its search context is built: no module needed to refuse them."""
    import tvm_mp

    return tvm_mp.explore(None, None, **kwargs)


def _compile_budget(art, budget, plan=False):
    import tvm_mp

    mod = digits_module(art)
    kwargs = {"plan": tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(4, 4))} if plan else {}
    return tvm_mp.compile(mod, budget=budget, calibration=[np.load(art.calib_npy)], **kwargs)


def _compile_budget_object(art, plan):
    import tvm_mp

    return _compile_budget(art, tvm_mp.Budget(energy_uj=20.0), plan)


def _impossible_budget(art):
    import tvm_mp

    return _compile_budget(art, tvm_mp.Budget(memory_kb=1e-6))


COMPILE = ["compile", "{onnx}", "--shape", "input=1,1,8,8", "--calibration", "{calib_npy}", "-o", "{scratch}/out"]
EXPLORE = ["explore", "{onnx}", "--shape", "input=1,1,8,8", "--calibration", "{calib_npy}", "-o", "{scratch}/out"]


CASES = [
    # -- Budget(...) ----------------------------------------------------------------------------------------------
    Case("budget-ok", partial(_budget, energy_uj=20.0, latency_ms=0.5, memory_kb=3), "ok"),
    Case("budget-int-numpy-ok", partial(_budget, energy_uj=np.float32(12.5), memory_kb=np.int64(4)), "ok"),
    Case("budget-bool", partial(_budget, energy_uj=True), "error", "energy_uj=True is a bool"),
    Case("budget-text", partial(_budget, latency_ms="5"), "error", "latency_ms='5' is a str"),
    Case("budget-nan", partial(_budget, energy_uj=float("nan")), "error", "positive finite"),
    Case("budget-inf", partial(_budget, memory_kb=float("inf")), "error", "positive finite"),
    Case("budget-negative", partial(_budget, latency_ms=-1.0), "error", "positive finite"),
    Case("budget-zero", partial(_budget, energy_uj=0), "error", "positive finite"),
    Case("budget-none-given", _budget, "error", "at least one limit"),
    Case("budget-all-none", partial(_budget, energy_uj=None, latency_ms=None, memory_kb=None), "error",
         "at least one limit"),
    Case("budget-list", partial(_budget, energy_uj=[20.0]), "error", "is a list"),
    # -- compile(budget=...) --------------------------------------------------------------------------------------
    Case("compile-budget-number", _compile_budget, "error", "must be a tvm_mp.Budget", args=(20.0,)),
    Case("compile-budget-and-plan", _compile_budget_object, "error", "not both", args=(True,)),
    Case("compile-budget-impossible", _impossible_budget, "error", "memory_kb", error="BudgetError",
         timeout_s=300.0),
    # -- explore(...) ---------------------------------------------------------------------------------------------
    Case("explore-budgets-negative", partial(_explore, budgets=-3), "error", "budgets=-3"),
    Case("explore-budgets-zero", partial(_explore, budgets=0), "error", "from 1 to"),
    Case("explore-budgets-bool", partial(_explore, budgets=True), "error", "budgets=True"),
    Case("explore-budgets-float", partial(_explore, budgets=2.5), "error", "budgets=2.5"),
    Case("explore-budgets-text", partial(_explore, budgets="4"), "error", "budgets='4'"),
    Case("explore-budgets-huge", partial(_explore, budgets=10**9), "error", "from 1 to 1000"),
    Case("explore-budgets-axis-not-swept", partial(_explore, budgets={"latency_ms": [1.0]}), "error", "not swept"),
    Case("explore-budgets-negative-limit", partial(_explore, budgets={"energy_uj": [5.0, -1.0]}), "error",
         "positive finite"),
    Case("explore-budgets-limits-text", partial(_explore, budgets={"energy_uj": "5"}), "error",
         "list of positive limits"),
    Case("explore-axes-text", partial(_explore, axes="energy_uj"), "error", "sequence of cost names"),
    Case("explore-axes-empty", partial(_explore, axes=()), "error", "axes is empty"),
    Case("explore-axes-unknown", partial(_explore, axes=("energy_uj", "speed")), "error", "unknown axis 'speed'"),
    Case("explore-seed-negative", partial(_explore, seed=-1), "error", "seed=-1"),
    Case("explore-seed-float", partial(_explore, seed=1.5), "error", "seed=1.5"),
    # -- CLI flags ------------------------------------------------------------------------------------------------
    cli_case("cli-budget-text", COMPILE + ["--budget-energy-uj", "lots"], "--budget-energy-uj 'lots'"),
    cli_case("cli-budget-nan", COMPILE + ["--budget-energy-uj", "nan"], "positive finite"),
    cli_case("cli-budget-inf", COMPILE + ["--budget-latency-ms", "inf"], "positive finite"),
    cli_case("cli-budget-1e400", COMPILE + ["--budget-memory-kb", "1e400"], "positive finite"),
    cli_case("cli-budget-negative", COMPILE + ["--budget-latency-ms=-2"], "positive finite"),
    cli_case("cli-budget-zero", COMPILE + ["--budget-memory-kb", "0"], "positive finite"),
    cli_case("cli-budget-empty", COMPILE + ["--budget-energy-uj", ""], "positive number"),
    cli_case("cli-budget-and-plan", COMPILE + ["--budget-energy-uj", "20", "--plan", "w4a4"], "exactly one of"),
    cli_case("cli-budget-neither", COMPILE, "exactly one of"),
    cli_case("cli-explore-budgets-negative", EXPLORE + ["--budgets=-3"], "budgets=-3"),
    cli_case("cli-explore-budgets-zero", EXPLORE + ["--budgets", "0"], "from 1 to"),
    cli_case("cli-explore-budgets-text", EXPLORE + ["--budgets", "many"], "invalid int value"),
    cli_case("cli-explore-axis-unknown", EXPLORE + ["--axes", "speed"], "invalid choice"),
    cli_case("cli-explore-seed-negative", EXPLORE + ["--seed=-1"], "seed=-1"),
    cli_case("cli-demo-budget-negative", ["demo", "--budget-energy-uj=-5", "-o", "{scratch}/demo"], "positive finite"),
    cli_case("cli-demo-front-budgets-zero", ["demo", "--front-budgets", "0", "-o", "{scratch}/demo"], "from 1 to"),
    cli_case("cli-demo-bad-plan", ["demo", "--plans", "w4a4", "w9a9", "-o", "{scratch}/demo"], "1 to 8"),
]


outcomes, test_case = corpus_tests(CASES, prepare=save_digits_module)
