"""Which cost model costs plans: the target's default, or one a user names -- an object, a name, or a model file
written by ``tvm-mp cost-model train`` -- and how reports and cost tables name it."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_mp.cost_models.analytical import AnalyticalModel, DatapathModel
from tvm_mp.cost_models.base import CostModelError
from tvm_mp.cost_models.select import LoadedCostModel, cost_model_name, resolve_cost_model
from tvm_mp.layers import list_layers
from tvm_mp.measure.cost_model_cli import main
from tvm_mp.measure.records import RecordStore
from tvm_mp.search.costs import CostTable
from tvm_mp.search.space import SearchSpace

from ._synthetic import synthetic_records


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A model trained on two records files at once (a lab's records and a board's), as `train` writes it."""
    tmp = tmp_path_factory.mktemp("model")
    records = synthetic_records(seed=6, n_layers=16, configs=3)
    RecordStore(tmp / "lab.jsonl").extend(records[: len(records) // 2])
    board = [r for r in synthetic_records(seed=7, n_layers=8, configs=3, device="board")]
    RecordStore(tmp / "board.jsonl").extend(board)
    out = tmp / "board_model.json"
    assert main(["train", "--records", str(tmp / "lab.jsonl"), "--records", str(tmp / "board.jsonl"), "--out",
                 str(out), "--rounds", "5", "--quantile-rounds", "3"]) == 0
    return out, len(records) // 2 + len(board)


def test_names_and_objects():
    assert isinstance(resolve_cost_model("analytical"), AnalyticalModel)
    assert isinstance(resolve_cost_model("datapath"), DatapathModel)
    model = AnalyticalModel()
    assert resolve_cost_model(model) is model and cost_model_name(model) == "AnalyticalModel"


@pytest.mark.parametrize("spec,needle", [("no_such_model.json", "not found"), (3, "cost_model must be")])
def test_bad_specs_are_one_line(spec, needle):
    with pytest.raises(CostModelError, match=needle) as info:
        resolve_cost_model(spec)
    assert "\n" not in str(info.value)


def test_model_file_is_loaded_and_named(model_file, residual):
    path, n_records = model_file
    model = resolve_cost_model(str(path))
    assert isinstance(model, LoadedCostModel)
    name = cost_model_name(model)
    assert name.startswith("XGBCostModel (board_model.json") and f"{n_records} records" in name
    assert "board" in name and "host" in name  # the devices it learned
    space = SearchSpace.build(list_layers(residual), None)
    table = CostTable.from_model(space, path)  # a path works wherever a model does
    assert table.model_name == name
    again = CostTable.from_model(space, model.model)
    np.testing.assert_allclose(table.latency_ms, again.latency_ms)
