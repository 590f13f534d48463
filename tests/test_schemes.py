from collections import Counter

import pytest

from dyntie_core import unique_blocks
from dyntie_core.config import MethodConfig
from dyntie_core.policies import make_policy
from dyntie_core.schemes import SCHEMES, make_tie_map, random_contiguous_tie_map, random_tie_map


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


def test_random_contiguous_maps_are_contiguous_groups_of_the_asked_count():
    for seed in range(50):
        tie_map = random_contiguous_tie_map(12, 4, seed)
        assert unique_blocks(tie_map) == 4
        assert list(tie_map) == sorted(tie_map)  # non-decreasing: every group is a run of positions
        assert all(tie_map[j] == j for j in tie_map)  # each group runs its first position's block
    assert random_contiguous_tie_map(12, 4, 7) == random_contiguous_tie_map(12, 4, 7)  # a seed fixes the map
    assert random_contiguous_tie_map(12, 1, 3) == (0,) * 12
    assert random_contiguous_tie_map(5, 5, 3) == (0, 1, 2, 3, 4)
    with pytest.raises(ValueError, match="n_unique"):
        random_contiguous_tie_map(4, 5, 0)


def test_random_contiguous_draws_every_grouping_equally_often():
    # 5 positions in 3 groups: C(4, 2) = 6 compositions, each expected 1/6 of the draws.
    counts = Counter(random_contiguous_tie_map(5, 3, seed) for seed in range(3000))
    assert len(counts) == 6
    assert all(abs(n / 3000 - 1 / 6) < 0.03 for n in counts.values())


def test_random_contiguous_is_a_method_with_a_required_count():
    policy = make_policy(MethodConfig(name="random-contiguous", n_unique=4), n_layer=12, seed=2)
    assert policy.initial_tie_map(12) == random_contiguous_tie_map(12, 4, 2)
    with pytest.raises(ValueError, match="n_unique"):
        make_policy(MethodConfig(name="random-contiguous"), n_layer=12, seed=2)


def test_random_contiguous_shares_its_roots_with_random_fixed_of_the_same_seed():
    for seed in range(20):  # paired controls: the same roots, assigned contiguously or at random
        assert set(random_contiguous_tie_map(12, 4, seed)) == set(random_tie_map(12, 4, seed))
