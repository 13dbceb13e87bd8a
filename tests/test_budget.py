"""Budgets: range parsing, analytic fit checks, rejection sampling within a budget."""

import random

import pytest

from gp_proxy.errors import AutoproxError
from vit_space.search.budget import Budget, parse_range, sample_within
from vit_space.spaces import get_space


@pytest.mark.parametrize("text, expected", [("5-7.5", (5e6, 7.5e6)), ("-6", (0.0, 6e6)), ("2-", (2e6, float("inf")))])
def test_parse_range_in_millions(text, expected):
    assert parse_range(text) == expected


@pytest.mark.parametrize("text", ["5", "a-b", "7-5", ""])
def test_bad_ranges_say_the_format(text):
    with pytest.raises(AutoproxError, match="LO-HI in millions"):
        parse_range(text)


def test_sampled_architectures_are_distinct_and_fit_the_budget():
    space = get_space("pit")
    budget = Budget(2e6, 4e6, macs_max=1e9, num_classes=100)
    archs = sample_within(space, 20, random.Random(0), budget)
    assert len({space.arch_hash(a) for a in archs}) == 20
    assert all(2e6 <= space.num_params(a, 100) <= 4e6 and space.macs(a, 100) <= 1e9 for a in archs)
    assert archs == sample_within(space, 20, random.Random(0), budget)  # seeded


def test_an_impossible_budget_names_the_space_range():
    with pytest.raises(AutoproxError, match=r"only 0 of 2 new distinct autoformer .* spans about 5\.\d+M to \d+\.\d+M"):
        sample_within(get_space("autoformer"), 2, random.Random(0), Budget(50e6, 60e6))
