"""interp.layers: layer indices resolved, with errors that name the valid range."""

import pytest

import interp
from interp.layers import resolve_layers


def test_resolve_layers_errors_name_the_range():
    assert resolve_layers("all", 4) == [0, 1, 2, 3]
    assert resolve_layers([-1, 0, 0], 4) == [0, 3]
    with pytest.raises(interp.LayerIndexError, match="4 decoder layers, valid indices are 0..3"):
        resolve_layers([4], 4)
    with pytest.raises(interp.LayerIndexError):
        resolve_layers("first", 4)
