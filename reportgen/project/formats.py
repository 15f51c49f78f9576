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
