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
from typing import Any

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


class Measured(float):
    """A metric as the report quotes it: the mean over a run's repeats, which prints and computes as
    that number, with the spread alongside (`runs["x"].val_accuracy.std`, `.ci`, `.n`, `.values`)."""

    spread: Spread

    def __new__(cls, values: Sequence[float]) -> Measured:
        found = spread(values)
        made = super().__new__(cls, found.mean)
        made.spread = found
        return made

    @property
    def mean(self) -> float:
        return float(self)

    @property
    def std(self) -> float | None:
        return self.spread.std

    @property
    def ci(self) -> tuple[float, float] | None:
        return self.spread.ci

    @property
    def n(self) -> int:
        return self.spread.n

    @property
    def values(self) -> tuple[float, ...]:
        return self.spread.values

    def __reduce__(self) -> tuple[Any, ...]:
        return (Measured, (self.spread.values,))


def measured(values: Sequence[float | None]) -> Measured | float | None:
    """A metric over repeats: a Measured where every repeat has a finite value, the first repeat's
    value as it is otherwise (None, or a diverged run's NaN: no spread to give)."""
    if not values:
        return None
    if any(v is None or not math.isfinite(v) for v in values):
        return values[0]
    return Measured([float(v) for v in values if v is not None])


# --- two runs compared ----------------------------------------------------------------------------

WELCH, ONE_AGAINST, MCNEMAR, NO_TEST = "welch", "one against repeats", "mcnemar", "none"


@dataclass(frozen=True)
class Comparison:
    """One run against another on a metric: the difference of their means (first minus second), its
    95% interval and the p-value of "no difference", by the test the data allow: Welch's t-test over
    repeats (both runs repeated), a t-test of a single run against the other's repeats (one side
    repeated), McNemar's on the validation images (accuracy of two single runs), else none (one run
    each of a loss: nothing to tell the difference from noise)."""

    first: str
    second: str
    metric: str
    difference: float
    ci: tuple[float, float] | None
    p_value: float | None
    test: str
    n: tuple[int, int]  # repeats (Welch) or discordant images (McNemar) each side
    lower_is_better: bool = False
    digits: int = 2  # decimals of a percentage point

    @property
    def differs(self) -> bool:
        """Whether the difference is real at 95%: the interval leaves out zero."""
        return self.p_value is not None and self.p_value < 1 - LEVEL

    @property
    def higher(self) -> bool:
        return self.difference > 0

    @property
    def better(self) -> bool:
        """Whether the first run is the better on this metric (whether or not it differs)."""
        return self.difference < 0 if self.lower_is_better else self.difference > 0

    @property
    def verdict(self) -> str:
        """Its sign and significance in a few words: what a sentence quoting it rests on."""
        side = "higher" if self.difference > 0 else "lower" if self.difference < 0 else "equal"
        return f"{side}, {'differs' if self.differs else 'cannot tell apart' if self.test != NO_TEST else 'untested'}"

    def amount(self, value: float) -> str:
        if self.metric.endswith("accuracy"):
            return f"{abs(value) * 100:.{self.digits}f} points"
        if self.metric == "epochs":
            return f"{abs(value):.3g} epochs"
        return f"{abs(value):.4g}"

    def signed(self, value: float) -> str:
        text = (f"{value * 100:.{self.digits}f}" if self.metric.endswith("accuracy") else f"{value:.4g}")
        return text.replace("-", "\u2212")

    @property
    def meaning(self) -> str:
        """What the test says, in words: "a real difference at 95%" or "within what chance allows"."""
        if self.test == NO_TEST:
            return "untested (one run each, and no per-image results for this metric)"
        return "a real difference at 95%" if self.differs else "within what chance allows at 95%"

    @property
    def short(self) -> str:
        """"1.20 points higher (p = 0.004)": the difference and its p-value, for a table's note."""
        head = ("the same" if self.difference == 0 else
                f"{self.amount(self.difference)} {'higher' if self.difference > 0 else 'lower'}")
        if self.p_value is None:
            return f"{head} (not tested)"
        return f"{head} ({'p < 0.001' if self.p_value < 0.001 else f'p = {self.p_value:.3f}'})"

    def __str__(self) -> str:
        """"1.20 points higher (95% CI 0.40 to 2.00, p = 0.004; Welch's t-test over 5 and 5 repeats)"."""
        head = ("the same" if self.difference == 0 else
                f"{self.amount(self.difference)} {'higher' if self.difference > 0 else 'lower'}")
        if self.test == NO_TEST:
            return f"{head} (one run each: no test)"
        assert self.ci is not None and self.p_value is not None
        unit = "measurements" if self.metric == "epochs" else "repeats"
        how = (f"Welch's t-test over {self.n[0]} and {self.n[1]} {unit}" if self.test == WELCH else
               f"t-test of one run against {max(self.n)} {unit} of the other" if self.test == ONE_AGAINST else
               f"McNemar's test on the {self.n[0] + self.n[1]} images only one of the two got right")
        p = "p < 0.001" if self.p_value < 0.001 else f"p = {self.p_value:.3f}"
        return f"{head} (95% CI {self.signed(self.ci[0])} to {self.signed(self.ci[1])}, {p}; {how})"


def welch(first: Sequence[float], second: Sequence[float], level: float = LEVEL) -> tuple[float, tuple[float, float],
                                                                                          float]:
    """Welch's t-test of two samples' means: (difference, its interval, two-sided p-value)."""
    from scipy.stats import t

    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.size < 2 or b.size < 2:
        raise ValueError("Welch's test needs at least two values on each side")
    difference = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:  # both sides without any spread: only an exact tie is no difference
        return difference, (difference, difference), 1.0 if difference == 0 else 0.0
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * t.sf(abs(difference) / se, df))
    return difference, (difference - half, difference + half), p


def against_repeats(one: float, repeats: Sequence[float], level: float = LEVEL) -> tuple[float, tuple[float, float],
                                                                                        float]:
    """A single run against another run's repeats: (one - their mean, its interval, two-sided p). The
    single run is taken as one more draw with the repeats' spread (Student's t prediction interval,
    n - 1 degrees of freedom): all a single value allows."""
    from scipy.stats import t

    data = np.asarray(repeats, dtype=float)
    difference = float(one - data.mean())
    se = float(data.std(ddof=1)) * math.sqrt(1 + 1 / data.size)
    if se == 0:
        return difference, (difference, difference), 1.0 if difference == 0 else 0.0
    half = float(t.ppf(0.5 + level / 2, data.size - 1)) * se
    return difference, (difference - half, difference + half), float(2 * t.sf(abs(difference) / se, data.size - 1))


def paired_interval(first: np.ndarray, second: np.ndarray, level: float = LEVEL) -> tuple[float, tuple[float, float]]:
    """The difference of two accuracies on the same images, and its Wald interval for paired
    proportions (Agresti): from the images only one of the two got right."""
    from scipy.stats import norm

    n = first.size
    b = int(np.sum(first & ~second))
    c = int(np.sum(~first & second))
    difference = (b - c) / n
    se = math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
    half = float(norm.ppf(0.5 + level / 2)) * se
    return difference, (difference - half, difference + half)


def compare(first: str, second: str, metric: str, values: tuple[Sequence[float], Sequence[float]],
            correct: tuple[np.ndarray, np.ndarray] | None = None, digits: int = 2) -> Comparison:
    """Two runs on a metric, from their repeats' values and (for accuracy on the validation images)
    their first repeats' per-image correctness."""
    lower = metric.endswith("loss")
    a, b = list(values[0]), list(values[1])
    if len(a) >= 2 and len(b) >= 2:
        difference, ci, p = welch(a, b)
        return Comparison(first, second, metric, difference, ci, p, WELCH, (len(a), len(b)), lower, digits)
    if len(a) >= 2 or len(b) >= 2:  # one run against another's repeats
        many, one, sign = (a, b[0], -1.0) if len(a) >= 2 else (b, a[0], 1.0)
        difference, ci, p = against_repeats(one, many)
        if sign < 0:
            difference, ci = -difference, (-ci[1], -ci[0])
        return Comparison(first, second, metric, difference, ci, p, ONE_AGAINST, (len(a), len(b)), lower, digits)
    if correct is not None and metric == "val_accuracy":
        test = mcnemar(*correct)
        difference, ci = paired_interval(*correct)
        return Comparison(first, second, metric, difference, ci, test.p_value, MCNEMAR,
                          (test.only_first, test.only_second), lower, digits)
    return Comparison(first, second, metric, float(np.mean(a) - np.mean(b)), None, None, NO_TEST,
                      (len(a), len(b)), lower, digits)


def interval(values: Sequence[float], total: int | None = None,
             level: float = LEVEL) -> tuple[tuple[float, float], str]:
    """The 95% interval of a metric: Student's t over two or more repeats; for a single run's
    accuracy on `total` images the exact binomial (Clopper-Pearson) interval. Returns it and which."""
    if len(values) >= 2:
        found = spread(values, level)
        assert found.ci is not None
        return found.ci, "t"
    if total:
        from scipy.stats import binomtest

        right = round(float(values[0]) * total)
        ci = binomtest(right, total).proportion_ci(confidence_level=level, method="exact")
        return (float(ci.low), float(ci.high)), "binomial"
    return (float(values[0]), float(values[0])), "none"


def against(values: Sequence[float], threshold: float, total: int | None = None) -> dict[str, Any]:
    """Where a metric stands against a threshold at 95%: "above" or "below" when its whole interval
    is, else "cannot tell"; with the interval and how it was made (stats.interval)."""
    ci, how = interval(values, total)
    side = ("above" if ci[0] >= threshold else "below" if ci[1] < threshold else "cannot tell")
    if how == "none":
        side = "above" if values[0] >= threshold else "below"
    return {"side": side, "ci": ci, "method": how}
