import pytest

from dyntie_core import unique_blocks
from dyntie_core.schemes import SCHEMES, make_tie_map


@pytest.mark.parametrize(
    "name, n_layer, n_unique, expected",
    [
        ("vanilla", 4, None, (0, 1, 2, 3)),
        ("all-shared", 4, None, (0, 0, 0, 0)),
        ("sequence", 6, 3, (0, 0, 2, 2, 4, 4)),  # AABBCC
        ("sequence", 12, 3, (0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8)),
        ("cycle", 6, 3, (0, 1, 2, 0, 1, 2)),  # ABCABC
        ("cycle", 7, 3, (0, 1, 2, 0, 1, 2, 0)),
        ("cycle-rev", 6, 3, (0, 1, 2, 2, 1, 0)),  # ABCCBA
        ("cycle-rev", 12, 3, (0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 1, 0)),
        ("cycle-rev", 5, 3, (0, 1, 2, 2, 1)),
        ("mirror", 6, None, (0, 1, 2, 2, 1, 0)),
        ("mirror", 5, None, (0, 1, 2, 1, 0)),
        ("sandwich", 12, 4, (0, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 11)),  # A (BC)* D
        ("sandwich", 6, 3, (0, 1, 1, 1, 1, 5)),  # A BBBB C
        ("sandwich", 5, 5, (0, 1, 2, 3, 4)),
        ("sandwich", 2, 2, (0, 1)),
    ],
)
def test_scheme_maps(name, n_layer, n_unique, expected):
    tie_map = make_tie_map(name, n_layer, n_unique)
    assert tie_map == expected
    if n_unique is not None:
        assert unique_blocks(tie_map) == n_unique


@pytest.mark.parametrize("name", ["sequence", "cycle", "cycle-rev", "sandwich"])
def test_schemes_needing_a_count_refuse_to_guess(name):
    with pytest.raises(ValueError, match="needs n_unique"):
        make_tie_map(name, 6)


def test_bad_scheme_requests_are_rejected():
    with pytest.raises(ValueError, match="divisible"):
        make_tie_map("sequence", 7, 3)
    with pytest.raises(ValueError, match="unknown scheme"):
        make_tie_map("zigzag", 4)
    with pytest.raises(ValueError, match="n_unique"):
        make_tie_map("cycle", 4, 5)
    with pytest.raises(ValueError, match="1 unique"):
        make_tie_map("all-shared", 4, 2)
    with pytest.raises(ValueError, match="sandwich needs n_unique >= 3"):
        make_tie_map("sandwich", 12, 2)
    with pytest.raises(ValueError, match="has 2 unique blocks"):
        make_tie_map("sandwich", 2, 1)


def test_every_scheme_is_chain_free():
    for name in SCHEMES:
        tie_map = make_tie_map(name, 12, 4 if name in ("sequence", "cycle", "cycle-rev", "sandwich") else None)
        assert all(tie_map[j] == j for j in tie_map)
