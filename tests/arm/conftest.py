"""aarch64 tests need the cross compiler and qemu (``.ci/apt-packages.txt``): CI must have them; elsewhere the
tests are skipped with the install command."""

import os

import pytest

from tvm_mp.testing import qemu


@pytest.fixture(scope="session")
def arm_tools():
    if not qemu.tools_available():
        message = "needs gcc-aarch64-linux-gnu and qemu-user: apt-get install $(grep -v '^#' .ci/apt-packages.txt)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
