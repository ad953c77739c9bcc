"""The local classifier's length-aware split (model_repository/python_models/classifier.py)."""

import numpy as np
import pytest

from model_repository.standalone import python_model

length_groups = python_model("classifier").length_groups
stack = python_model("classifier").stack
LENGTHS = np.array([30, 12, 64, 31, 29, 150, 33, 12, 28])


def padded(groups):
    return sum(len(g) * LENGTHS[g].max() for g in groups)


def test_every_row_is_run_exactly_once_in_length_order():
    groups = length_groups(LENGTHS, 48, 8192)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(LENGTHS)))
    assert all(LENGTHS[a].max() <= LENGTHS[b].min() for a, b in zip(groups, groups[1:]))


@pytest.mark.parametrize(
    "overhead, expected",
    [
        (0, [[12, 12], [28], [29], [30], [31], [33], [64], [150]]),  # no cost per run: no padding at all
        (48, [[12, 12, 28, 29, 30, 31, 33], [64], [150]]),  # the long ones get runs of their own
        (10**6, [[12, 12, 28, 29, 30, 31, 33, 64, 150]]),  # runs cost everything: one run
    ],
)
def test_the_split_minimises_padding_plus_run_overhead(overhead, expected):
    groups = length_groups(LENGTHS, overhead, 8192)
    assert [sorted(LENGTHS[g].tolist()) for g in groups] == expected
    one_run = padded([np.arange(len(LENGTHS))]) + overhead
    assert padded(groups) + overhead * len(groups) <= one_run


def test_no_run_exceeds_the_token_bound_unless_a_row_alone_does():
    for group in length_groups(LENGTHS, 48, 100):
        assert len(group) * LENGTHS[group].max() <= 100 or len(group) == 1


@pytest.mark.parametrize("max_rows", [1, 3])
def test_a_row_bound_caps_every_run(max_rows):
    groups = length_groups(LENGTHS, 10**6, 8192, max_rows)  # runs cost everything, yet stay bounded
    assert max(len(g) for g in groups) == max_rows
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(LENGTHS)))


def test_one_text_is_its_own_run():
    assert [g.tolist() for g in length_groups(np.array([17]), 48, 8192)] == [[0]]


def test_requests_of_different_widths_are_stacked_and_padded_with_zeros():
    out = stack([np.array([[1, 2, 3]]), np.array([[4, 0, 0, 0, 0], [5, 6, 0, 0, 0]])])
    assert out.dtype == np.int64 and out.tolist() == [[1, 2, 3, 0, 0], [4, 0, 0, 0, 0], [5, 6, 0, 0, 0]]
