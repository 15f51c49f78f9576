"""The spread over repeats and McNemar's test, against scipy's own."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from reportgen.views.stats import correct, mcnemar, spread


@pytest.mark.parametrize("values", [[0.91, 0.93], [0.9712, 0.9698, 0.9705, 0.9731, 0.9690], [0.5] * 3 + [0.6]])
def test_the_t_interval_and_standard_deviation_are_scipys(values):
    found = spread(values)
    sem = scipy_stats.sem(values)
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sem)
    assert found.n == len(values) and found.mean == pytest.approx(np.mean(values))
    assert found.std == pytest.approx(np.std(values, ddof=1))
    assert found.ci == pytest.approx((low, high))


def test_one_run_has_a_mean_but_no_spread_and_bad_values_are_refused():
    one = spread([0.97])
    assert (one.mean, one.std, one.ci, one.n) == (0.97, None, None, 1)
    with pytest.raises(ValueError):
        spread([])
    with pytest.raises(ValueError):
        spread([0.9, float("nan")])


@pytest.mark.parametrize(("b", "c"), [(0, 0), (3, 0), (12, 5), (40, 61), (7, 7), (150, 110)])
def test_mcnemar_is_scipys_exact_binomial_test_on_the_discordant_images(b, c):
    both, neither = 500, 30
    first = np.array([True] * both + [True] * b + [False] * c + [False] * neither)
    second = np.array([True] * both + [False] * b + [True] * c + [False] * neither)
    found = mcnemar(first, second)
    assert (found.only_first, found.only_second) == (b, c)
    expected = scipy_stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    assert found.p_value == pytest.approx(expected)
    assert found.differs() == (expected < 0.05)


def test_correctness_comes_from_the_misclassified_indices_a_result_keeps():
    right = correct([4, 1], 6)
    assert right.tolist() == [True, False, True, True, False, True]
    with pytest.raises(ValueError):
        correct([6], 6)
    with pytest.raises(ValueError):
        mcnemar(correct([], 5), correct([], 6))
