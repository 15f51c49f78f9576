"""Views that pick a winner say whether it can be told from the runner-up at 95%, and show ties as
ties: from runs' repeats (no training here: facts as analysis.over_repeats makes them)."""

from __future__ import annotations

import re

from reportgen.views import analysis
from reportgen.views import metric_vs_setting as mvs
from reportgen.views import results as results_view
from reportgen.views.base import ViewInputs


def repeated(name, strength, accuracies, params=1000):
    """A run's facts over its repeats, each repeat's as run_facts gives them (the parts views read)."""
    each = [{"name": name if i == 0 else f"{name}#{i + 1}", "status": "ok", "params": params, "epochs": 2,
             "val_accuracy": a, "val_loss": 1 - a, "best_val_accuracy": a, "best_epoch": 2,
             "first_val_accuracy": a - 0.1, "config": {"strength": strength, "seed": i + 1}}
            for i, a in enumerate(accuracies)]
    return analysis.over_repeats(each)


def inputs(tmp_path, runs):
    return ViewInputs(assets=tmp_path, figure="1-view.svg", section="1", runs=tuple(runs), facts=runs,
                      classifiers=frozenset(runs), entries={}, measures={}, validation_images=None)


RUNS = {
    # Two strengths within each other's noise, and one clearly worse.
    "l2-1e-06": repeated("l2-1e-06", 1e-6, [0.970, 0.974, 0.966]),
    "l2-1e-08": repeated("l2-1e-08", 1e-8, [0.969, 0.972, 0.965]),
    "l2-1": repeated("l2-1", 1.0, [0.60, 0.61, 0.59]),
}


def test_a_best_lambda_within_noise_of_the_runner_up_is_shown_tied(tmp_path):
    collected = mvs.VIEW.collect(mvs.Settings(kind="metric_vs_setting", setting="strength"), inputs(tmp_path, RUNS))
    m = collected.facts
    assert m["best"]["name"] == "l2-1e-06" and m["runner_up"] == "l2-1e-08"
    assert not m["distinct"] and m["tied"] == ["l2-1e-06", "l2-1e-08"]
    assert "Welch's t-test over 3 and 3 repeats" in m["against_runner_up"]
    assert all(p["low"] < p["y"] < p["high"] for p in m["points"])  # error bars over repeats


def test_a_clear_winner_is_said_to_differ_and_the_results_table_marks_it_alone(tmp_path):
    runs = {name: RUNS[name] for name in ("l2-1e-06", "l2-1")}
    m = results_view.VIEW.collect(results_view.Settings(kind="results"), inputs(tmp_path, runs)).facts
    assert m["best"]["name"] == "l2-1e-06" and m["distinct"] and m["tied"] == ["l2-1e-06"]
    assert m["repeats"] == 3 and m["against_short"] == "37.00 points higher (p < 0.001)"


def test_the_results_table_shows_ties_as_ties_on_the_page(tmp_path):
    from jinja2 import FileSystemLoader

    from reportgen.report.commentary import environment
    from tests.conftest import REPO

    m = results_view.VIEW.collect(results_view.Settings(kind="results"), inputs(tmp_path, RUNS)).facts
    env = environment(FileSystemLoader(str(REPO / "templates")))
    page = env.get_template("views/results.html.j2").render(v={"measured": m}, s={"number": "1"}, detailed=[],
                                                            percent_digits=2)
    assert page.count('class="highlight"') == 2  # both tied runs, not only the nominal best
    text = re.sub(r"<[^>]+>", "", " ".join(page.split()))
    assert "tied for best at 95% (highlighted): l2-1e-06, l2-1e-08." in text
    assert "97.00% ± 0.40 (95% CI 96.01–97.99%)" in page


def test_the_threshold_view_says_whether_the_smallest_is_surely_above_and_which_tie_with_the_line():
    rows = [repeated("small", 0, [0.965, 0.972, 0.968], params=10_000),  # straddles 97%
            repeated("mid", 0, [0.975, 0.976, 0.974], params=50_000),  # surely above
            repeated("big", 0, [0.980, 0.981, 0.979], params=90_000)]
    measured = analysis.params_threshold(rows, 0.97)
    assert measured["smallest"]["name"] == "mid" and measured["sure"]
    assert measured["ties"] == ["small"] and [r["side"] for r in measured["rows"]] == ["cannot tell", "above", "above"]
    single = analysis.params_threshold([{"name": "one", "params": 5, "val_accuracy": 0.972,
                                         "validation_size": 1000}], 0.97)
    assert single["smallest"]["name"] == "one" and not single["sure"] and single["rows"][0]["side"] == "cannot tell"


def test_a_comparison_whose_sign_or_significance_changed_is_told_apart_from_one_whose_numbers_moved():
    from reportgen.grade.check import compare_line, turned_message
    from reportgen.report.lock import comparison_changes

    made = {"first": "a", "second": "b", "metric": "val_accuracy", "verdict": "higher, differs", "words": "1 higher"}
    recorded = {"text": "T", "comparisons": [made]}
    moved = {**made, "words": "1.1 higher"}  # other numbers, the same conclusion
    assert comparison_changes(recorded, "T", [moved]) == []
    turned = comparison_changes(recorded, "T", [{**made, "verdict": "higher, cannot tell apart"}])
    assert [t["then"] for t in turned] == ["higher, differs"]
    assert "changed significance since the text was written" in turned_message(turned[0])
    flipped = comparison_changes(recorded, "T", [{**made, "verdict": "lower, differs"}])
    assert "changed sign since" in turned_message(flipped[0])
    assert comparison_changes(recorded, "edited", [{**made, "verdict": "lower, differs"}]) == []  # rewritten since
    assert compare_line('x\n{% set c = compare("a",  "b") %}\n', turned[0]) == 2
