"""Fixtures of the bad-input corpus: one fork server per session, the shared artifacts built once."""

import shutil

import numpy as np
import pytest

from tvm_mp.testing.isolate import PRELOAD, Isolator

from ._corpus import Artifacts


@pytest.fixture(scope="session")
def isolator():
    # pytest preloaded too: each case imports its corpus module, which imports pytest (0.4 s a case otherwise)
    with Isolator(jobs=2, preload=PRELOAD + ["pytest"]) as iso:
        yield iso


@pytest.fixture(scope="session")
def art(tmp_path_factory):
    import tvm_mp
    from tvm_mp.datasets import calibration_batches
    from tvm_mp.models import digits_cnn_path

    root = tmp_path_factory.mktemp("badinput")
    onnx = root / "digits.onnx"
    shutil.copy(digits_cnn_path(), onnx)
    calib = np.concatenate(calibration_batches(2, 8)).astype(np.float32)
    calib_npy = root / "calib.npy"
    np.save(calib_npy, calib)
    mod = tvm_mp.load_onnx(onnx, shapes={"input": (1, 1, 8, 8)})
    model = tvm_mp.compile(mod, plan=tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(8, 8)), calibration=[calib])
    compiled = root / "compiled"
    model.export(compiled)
    plan_json = root / "plan.json"
    plan_json.write_text(tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(4, 4)).to_json())
    return Artifacts(root=root, onnx=onnx, compiled=compiled, plan_json=plan_json, calib_npy=calib_npy)
