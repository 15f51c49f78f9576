"""How sure a number is: the spread of a metric over a run's repeats, and whether two classifiers
evaluated on the same validation images differ.

- `spread`: mean, sample standard deviation and a 95% confidence interval from Student's t (the
  right interval for the handful of repeats a coursework can afford; the normal one is too narrow).
- `mcnemar`: McNemar's exact test on the images one classifier got right and the other wrong, so
  even single runs get an honest "differs" or "cannot tell apart".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95  # of every interval and test the report prints


@dataclass(frozen=True)
class Spread:
    """A metric over n repeats: its mean, sample standard deviation and confidence interval
    (both None for a single run: one value has no spread)."""

    values: tuple[float, ...]
    mean: float
    std: float | None
    ci: tuple[float, float] | None

    @property
    def n(self) -> int:
        return len(self.values)


def spread(values: Sequence[float], level: float = LEVEL) -> Spread:
    """Mean, standard deviation (n - 1 in the denominator) and the Student-t interval of the mean."""
    from scipy.stats import t

    data = np.asarray(values, dtype=float)
    if data.size == 0 or not np.all(np.isfinite(data)):
        raise ValueError("a spread needs at least one value, all finite")
    mean = float(data.mean())
    if data.size == 1:
        return Spread(tuple(data.tolist()), mean, None, None)
    std = float(data.std(ddof=1))
    half = float(t.ppf(0.5 + level / 2, data.size - 1)) * std / math.sqrt(data.size)
    return Spread(tuple(data.tolist()), mean, std, (mean - half, mean + half))


@dataclass(frozen=True)
class McNemar:
    """Two classifiers on the same images: how many only the first got right, how many only the
    second, and the exact two-sided p-value of the difference."""

    only_first: int
    only_second: int
    p_value: float

    def differs(self, level: float = LEVEL) -> bool:
        return self.p_value < 1 - level


def correct(misclassified: Sequence[int], total: int) -> np.ndarray:
    """Per validation image, whether a classifier got it right, from the indices it got wrong (a
    classifier result keeps all of them, not only those drawn)."""
    right = np.ones(total, dtype=bool)
    wrong = np.asarray(misclassified, dtype=int)
    if wrong.size and (wrong.min() < 0 or wrong.max() >= total):
        raise ValueError(f"an image index outside 0..{total - 1}")
    right[wrong] = False
    return right


def mcnemar(first: np.ndarray, second: np.ndarray) -> McNemar:
    """McNemar's exact test: under "no difference" the discordant images split as a fair coin, so
    the p-value is twice the binomial tail of the smaller count (at most 1)."""
    if first.shape != second.shape:
        raise ValueError("the two classifiers were not evaluated on the same images")
    b = int(np.sum(first & ~second))
    c = int(np.sum(~first & second))
    n = b + c
    if n == 0:
        return McNemar(b, c, 1.0)
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return McNemar(b, c, min(1.0, 2 * tail))
