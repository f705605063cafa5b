"""Shared test settings: hypothesis profiles (CI runs the same amount of cases as a developer); tvm-mp's per-user
directory (the user tuning database) in a temporary directory, so no test reads or writes the real home; the
residual test network and its calibration batches, shared by the pass, format, accelerator and driver tests."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from ._nets import residual_net

settings.register_profile(
    "tvm_mp", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], derandomize=True
)
settings.load_profile("tvm_mp")


@pytest.fixture(scope="session", autouse=True)
def tvm_mp_home(tmp_path_factory):
    """``$TVM_MP_HOME`` for the whole session (and the subprocesses it starts): an empty directory, so builds see
    no user tuning database and ``tune`` never writes into ``~/.cache``. Tests that tune point it at their own
    directory with ``monkeypatch.setenv``."""
    from tvm_mp.targets import HOME_ENV

    old = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(tmp_path_factory.mktemp("tvm_mp_home"))
    yield os.environ[HOME_ENV]
    if old is None:
        os.environ.pop(HOME_ENV, None)
    else:
        os.environ[HOME_ENV] = old


@pytest.fixture(scope="session")
def isolator():
    """A fork server that imported tvm_mp once: runs a case (an API call or a ``tvm-mp`` command line) in its own
    process for a few milliseconds of start-up instead of ~4 s (:mod:`tvm_mp.testing.isolate`)."""
    from tvm_mp.testing.isolate import Isolator

    with Isolator(jobs=2) as iso:
        yield iso


@pytest.fixture(scope="session")
def residual():
    """:func:`tests._nets.residual_net` (every layer kind, integer and float edges), input (1, 3, 10, 10)."""
    return residual_net(0, last_channels=4)


@pytest.fixture(scope="session")
def residual_calib():
    """Three calibration batches of four samples for :func:`residual`."""
    rng = np.random.default_rng(1)
    return [rng.normal(0, 1, (4, 3, 10, 10)).astype(np.float32) for _ in range(3)]


#: Test files that take minutes (the documentation build runs every tutorial; the corpus compiles three real
#: networks): collected first, so that pytest-xdist (``--dist loadfile``) starts them at once on their own workers
#: instead of leaving one to run alone at the end of the suite (with ``--no-loadscope-reorder`` in addopts:
#: by default pytest-xdist sends the files with the most tests first).
LONG_FILES = ("test_docs.py", "test_corpus.py")


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)  # stable: the order within and after the long files is kept
