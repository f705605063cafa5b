import numpy as np
import pytest

from tvm_mp import Precision
from tvm_mp.errors import Error
from tvm_mp.search.sensitivity import Sensitivity, measure_sensitivity
from tvm_mp.search.space import SearchSpace

OPTIONS = [Precision(1, 1), Precision(2, 2), Precision(4, 4), Precision(8, 8)]


def test_each_layer_alone_and_fewer_bits_make_more_noise(scorer, layers):
    space = SearchSpace.build(layers, OPTIONS)
    sens = measure_sensitivity(scorer, space, with_drop=True)
    assert sens.noise.shape == (5, 4) and (sens.noise >= 0).all()
    assert (sens.noise[:, 0] > sens.noise[:, 3]).all()  # w1a1 is noisier than w8a8 on every layer
    assert sens.drop.shape == (5, 4) and sens.baseline == scorer.fp32_score()
    assert sens.table("noise") is sens.noise


def test_cache_file_is_reused_and_checked(scorer, layers, tmp_path):
    space = SearchSpace.build(layers, OPTIONS[:2])
    path = tmp_path / "sens.json"
    first = measure_sensitivity(scorer, space, cache_path=path)
    assert path.is_file()
    text = path.read_text()
    again = measure_sensitivity(scorer, space, cache_path=path)
    np.testing.assert_array_equal(first.noise, again.noise)
    # a file for another space is not used
    other = SearchSpace.build(layers, OPTIONS[2:])
    third = measure_sensitivity(scorer, other, cache_path=path)
    assert third.noise[0, 0] != first.noise[0, 0] and path.read_text() != text
    with pytest.raises(Error, match="does not fit"):
        Sensitivity.from_json(text, other)


def test_drop_table_needs_measuring(scorer, layers):
    sens = measure_sensitivity(scorer, SearchSpace.build(layers, OPTIONS[:1]))
    with pytest.raises(Error, match="with_drop"):
        sens.table("drop")
