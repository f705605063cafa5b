"""Precision search: scoring plans (accuracy), per-layer sensitivity, costs, annealing and baselines (greedy,
random, ILP), Pareto fronts, run-time operating points and budget-driven compilation. See ``docs/search.md``.

The public entry points are ``tvm_mp.explore``, ``tvm_mp.compile_adaptive`` and ``tvm_mp.compile(mod,
budget=...)``; import the modules of this package directly for the pieces.
"""
