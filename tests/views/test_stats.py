"""The spread over repeats and McNemar's test, against scipy's own."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from reportgen.views.stats import Measured, compare, correct, mcnemar, measured, spread, welch


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


@pytest.mark.parametrize(("a", "b"), [([0.97, 0.968, 0.972], [0.95, 0.953, 0.949, 0.951]),
                                      ([0.5, 0.52], [0.51, 0.49]), ([0.9, 0.91, 0.9, 0.92, 0.9], [0.9, 0.92])])
def test_welchs_test_and_its_interval_are_scipys(a, b):
    difference, (low, high), p = welch(a, b)
    expected = scipy_stats.ttest_ind(a, b, equal_var=False)
    interval = expected.confidence_interval(0.95)
    assert difference == pytest.approx(np.mean(a) - np.mean(b))
    assert p == pytest.approx(expected.pvalue)
    assert (low, high) == pytest.approx((interval.low, interval.high))


def test_a_metric_over_repeats_computes_as_its_mean_and_carries_its_spread():
    value = Measured([0.96, 0.97, 0.98])
    assert value == pytest.approx(0.97) and f"{value * 100:.1f}" == "97.0" and value > 0.969
    assert value.n == 3 and value.std == pytest.approx(0.01) and value.values == (0.96, 0.97, 0.98)
    assert value.ci == pytest.approx(scipy_stats.t.interval(0.95, 2, loc=0.97, scale=0.01 / np.sqrt(3)))
    assert measured([0.9, float("nan")]) == 0.9 and not isinstance(measured([0.9, None]), Measured)


def test_a_comparison_says_the_difference_its_interval_and_its_test_in_words():
    clear = compare("wide", "narrow", "val_accuracy", ([0.970, 0.972, 0.971], [0.950, 0.952, 0.951]))
    assert clear.test == "welch" and clear.differs and clear.better and clear.verdict == "higher, differs"
    assert str(clear).startswith("2.00 points higher (95% CI 1.")
    assert "Welch's t-test over 3 and 3 repeats" in str(clear)
    assert clear.meaning == "a real difference at 95%"
    tied = compare("a", "b", "val_accuracy", ([0.97, 0.95, 0.96], [0.955, 0.965, 0.96]))
    assert not tied.differs and tied.verdict.endswith("cannot tell apart") and "within what chance" in tied.meaning
    loss = compare("a", "b", "val_loss", ([0.10, 0.11, 0.12], [0.20, 0.21, 0.19]))
    assert loss.better and not loss.higher
    assert str(loss).startswith("0.09 lower (95% CI \u22120.1127 to \u22120.06733, p < 0.001")


def test_single_runs_are_compared_by_mcnemar_on_the_images_and_a_single_loss_is_not_tested():
    first = np.array([True] * 90 + [True] * 8 + [False] * 2)
    second = np.array([True] * 90 + [False] * 8 + [True] * 2)
    found = compare("a", "b", "val_accuracy", ([0.98], [0.92]), (first, second))
    assert found.test == "mcnemar" and found.difference == pytest.approx(0.06) and found.n == (8, 2)
    assert found.p_value == pytest.approx(scipy_stats.binomtest(8, 10, 0.5).pvalue)
    assert "McNemar's test on the 10 images only one of the two got right" in str(found)
    untested = compare("a", "b", "val_loss", ([0.1], [0.2]), (first, second))
    assert untested.test == "none" and untested.p_value is None and not untested.differs
    assert str(untested) == "0.1 lower (one run each: no test)"


def test_a_single_run_against_anothers_repeats_is_a_t_test_on_their_spread():
    repeats = [0.90, 0.91, 0.92]
    found = compare("cnn", "dense", "val_accuracy", ([0.95], repeats))
    se = np.std(repeats, ddof=1) * np.sqrt(1 + 1 / 3)
    assert found.test == "one against repeats" and found.difference == pytest.approx(0.04)
    assert found.p_value == pytest.approx(2 * scipy_stats.t.sf(0.04 / se, 2))
    assert found.ci == pytest.approx((0.04 - scipy_stats.t.ppf(0.975, 2) * se, 0.04 + scipy_stats.t.ppf(0.975, 2) * se))
    flipped = compare("dense", "cnn", "val_accuracy", (repeats, [0.95]))
    assert flipped.difference == pytest.approx(-0.04) and flipped.ci == pytest.approx((-found.ci[1], -found.ci[0]))
    assert "t-test of one run against 3 repeats of the other" in str(found)
