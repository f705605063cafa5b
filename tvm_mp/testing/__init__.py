"""Test and benchmark harnesses that ship with tvm-mp but are not the library.

Nothing in ``tvm_mp`` imports this package (``tests/test_imports.py`` checks it), so ``import tvm_mp`` never loads
it.

* :mod:`.qemu`    runs kernels and compiled models for aarch64 under ``qemu-aarch64`` (``tests/arm``,
                  ``bench/kernels.py --qemu``);
* :mod:`.machine` describes the machine a benchmark ran on (every ``bench/*.py`` writes it beside its figures);
* :mod:`.corpus`  locates the real pretrained models shipped in PyPI packages (``tests/test_corpus.py``).
"""
