"""Developer tools of the tvm-mp repository: scripts, not part of the installed package.

Run them from the repository root, e.g. ``python -m tools.train_digits``. Nothing in ``tvm_mp`` imports them.
"""
