"""How the report writes numbers, in tables, captions, alt text and prose alike: one format per
quantity. Accuracies and other shares are percentages with the project's `percent_digits`."""

from __future__ import annotations

from typing import Any

PERCENT_DIGITS = 2  # the default of project.toml's percent_digits


def pct(value: Any, digits: int = PERCENT_DIGITS) -> str:
    """0.9701 -> '97.01%'."""
    return f"{float(value) * 100:.{int(digits)}f}%"


def share(value: Any) -> str:
    """A fraction the author wrote, as a percentage with no more digits than it has: 0.97 -> '97%',
    0.975 -> '97.5%' (thresholds and tolerances, where pct's fixed decimals would add or drop some)."""
    return f"{round(float(value) * 100, 10):g}%"


def num(value: Any) -> str:
    """27660 -> '27,660'."""
    number = float(value)
    return f"{int(number):,}" if number.is_integer() else f"{number:,}"


def fixed(value: Any, digits: int = 4) -> str:
    """0.970123 -> '0.9701'."""
    return f"{float(value):.{int(digits)}f}"


def spread(value: Any, digits: int = PERCENT_DIGITS, percent: bool = True) -> str:
    """A metric over repeats (stats.Measured) as its mean, standard deviation and 95% interval:
    '97.01% ± 0.12 (95% CI 96.86–97.16%)'; a single run's value as it is ('97.01%'). Losses and
    other non-shares with `percent=False`: '0.0812 ± 0.0040 (95% CI 0.0762–0.0862)'."""
    def one(v: float) -> str:
        return f"{float(v) * 100:.{int(digits)}f}" if percent else f"{float(v):.4f}"

    unit = "%" if percent else ""
    std, ci = getattr(value, "std", None), getattr(value, "ci", None)
    if std is None or ci is None:
        return one(value) + unit
    return f"{one(value)}{unit} ± {one(std)} (95% CI {one(ci[0])}–{one(ci[1])}{unit})"
