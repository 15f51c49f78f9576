"""Repeats through real builds: each repeat is cached on its own, so raising N trains only the new
ones and lowering it trains nothing; the report quotes their mean and spread."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import build_or_fail

pytestmark = pytest.mark.slow

SECTION = """
number = "1"
title = "Two nets"
[defaults]
kind = "mlp"
[[runs]]
name = "net-{hidden_layers}"
[runs.grid]
hidden_layers = [[4], [32]]
"""

COMMENTARY = """
The wide net reaches {{ runs["net-32"].val_accuracy | pct }} over {{ runs["net-32"].val_accuracy.n }} repeat(s),
{{ compare("net-32", "net-4") }} than the narrow one.
"""

LIMITS = ["--limit-train", "640", "--limit-val", "200"]


def _trained(output: str) -> list[str]:
    return re.findall(r"\[\d+/\d+\] (\S+): val_accuracy", output)


def test_raising_repeats_trains_only_the_new_ones_and_lowering_trains_nothing(make_project):
    root = make_project({"experiments/1.toml": SECTION, "experiments/1.md": COMMENTARY})
    assert _trained(build_or_fail(root, [*LIMITS, "--repeats", "2"])) == ["net-4", "net-4#2", "net-32", "net-32#2"]
    page = (root / "build" / "report.html").read_text()
    assert "over 2 repeat(s)" in page and "Welch's t-test over 2 and 2 repeats" in page

    assert _trained(build_or_fail(root, [*LIMITS, "--repeats", "3"])) == ["net-4#3", "net-32#3"]
    rows = json.loads((root / "build" / "results.json").read_text())["experiments"]
    wide = [r for r in rows if r["name"].startswith("net-32")]
    assert [r["name"] for r in wide] == ["net-32", "net-32#2", "net-32#3"]
    assert len({r["config"]["seed"] for r in wide}) == 3
    mean = sum(r["val_accuracy"] for r in wide) / 3
    page = (root / "build" / "report.html").read_text()
    assert f"reaches {mean * 100:.2f}% over 3 repeat(s)" in page

    output = build_or_fail(root, LIMITS)  # back to one: every result is cached, the single run's test is McNemar's
    assert _trained(output) == [] and "0 to train" in output
    page = (root / "build" / "report.html").read_text()
    assert "over 1 repeat(s)" in page and "McNemar's test on the" in page
    assert len(list((root / ".reportgen-cache").glob("*/*/result.json"))) == 6  # nothing was dropped


def test_check_names_a_comparison_whose_sign_or_significance_changed_since_the_text_was_written(make_project,
                                                                                                 runner):
    from reportgen.cli import app

    root = make_project({"experiments/1.toml": SECTION, "experiments/1.md": COMMENTARY})
    build_or_fail(root, [*LIMITS, "--repeats", "2"])
    lock_path = root / "experiments" / "commentary.lock.json"
    lock = json.loads(lock_path.read_text())
    (slot,) = next(iter(lock["slots"].values())).values()
    (recorded,) = slot["comparisons"]
    assert recorded["first"] == "net-32" and recorded["verdict"].startswith("higher")
    result = runner.invoke(app, ["check", "-C", str(root)])
    assert "comparison" not in result.output  # as written: nothing to say

    # The text was written when the comparison came out the other way (as a retrained run may make it).
    recorded["verdict"], recorded["words"] = "lower, differs", "3.00 points lower (...)"
    lock_path.write_text(json.dumps(lock))
    result = runner.invoke(app, ["check", "-C", str(root)])
    assert result.exit_code == 1
    assert re.search(r"1\.md:2: compare\('net-32', 'net-4'\) on val_accuracy changed sign", result.output,
                     re.DOTALL), result.output
