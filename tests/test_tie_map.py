import numpy as np
import pytest

from dyntie_core import resolve_roots, unique_blocks, validate_tie_map


def test_valid_maps_are_returned_as_int_tuples():
    assert validate_tie_map([0, 0, 1, 3], 4) == (0, 0, 1, 3)
    assert validate_tie_map(np.array([0, 1, 1]), 3) == (0, 1, 1)


@pytest.mark.parametrize(
    "tie_map, n_layer, fragment",
    [
        ([0, 1], 3, "length 2"),
        ([0, 1, 2, 3], 3, "length 4"),
        ([0, 2, 1], 3, "position 1: target 2"),
        ([0, 0, -1], 3, "position 2: negative"),
        ([0, 1.0, 2], 3, "position 1: expected an int"),
        ([0, True, 2], 3, "position 1: expected an int"),
        ([0, "1", 2], 3, "position 1: expected an int"),
        ([1, 1, 2], 3, "position 0"),
        ("012", 3, "string"),
        (None, 3, "sequence of ints"),
    ],
)
def test_invalid_maps_name_the_offending_position(tie_map, n_layer, fragment):
    with pytest.raises(ValueError, match=fragment):
        validate_tie_map(tie_map, n_layer)


def test_chains_resolve_to_their_root():
    # 3 -> 2 -> 1 -> 0 and 5 -> 4 (independent)
    assert resolve_roots((0, 0, 1, 2, 4, 4)) == (0, 0, 0, 0, 4, 4)
    assert unique_blocks((0, 0, 1, 2, 4, 4)) == 2
    assert unique_blocks(tuple(range(7))) == 7
