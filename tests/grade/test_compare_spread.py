"""compare and verify with repeats: a run repeated in both builds is judged by its repeats' spread,
a single run by the binomial rule, and the rule used is named."""

from __future__ import annotations

from pathlib import Path

from reportgen.grade.compare import SPREAD, Build, Row, Tolerance, compare, describe
from reportgen.grade.verify import fold_repeats

VALIDATION = 10_000


def _build(tmp_path: Path, label: str, runs: dict[str, list[float]]) -> Build:
    experiments = []
    for run, values in runs.items():
        for i, value in enumerate(values, start=1):
            name = run if i == 1 else f"{run}#{i}"
            experiments.append({"name": name, "section": "1", "kind": "mlp",
                                "config": {"name": name, "kind": "mlp", "seed": i, "hidden_layers": [8]},
                                "metrics": {"val_accuracy": value, "params": 6370}})
    manifest = {"tool": {"name": "reportgen"}, "project": {"title": "T"}, "experiments": experiments,
                "data": {"name": "mnist", "fingerprint": "f" * 64, "validation": VALIDATION}}
    return Build(tmp_path / label, manifest)


def test_a_run_repeated_in_both_builds_is_judged_by_its_spread_not_by_the_binomial_rule(tmp_path):
    # Tight repeats, means 1 point apart: within the binomial rule for 10,000 images (1.27 points),
    # well outside what five repeats with a spread of 0.1 points allow.
    a = _build(tmp_path, "a", {"tight": [0.900, 0.901, 0.899, 0.900, 0.900],
                               "loose": [0.90, 0.94, 0.86, 0.92, 0.88]})
    b = _build(tmp_path, "b", {"tight": [0.910, 0.911, 0.909, 0.910, 0.910],
                               "loose": [0.92, 0.95, 0.88, 0.93, 0.91]})
    rows = {r.name: r for r in compare(a, b).rows}
    assert set(rows) == {"tight", "loose"}  # the repeats are folded into their run
    tight = next(d for d in rows["tight"].diffs if d.metric == "val_accuracy")
    assert tight.rule == SPREAD and abs(tight.diff - 0.01) < 1e-9
    assert rows["tight"].state == "changed" and tight.allowed < 0.002
    # Spread of 3 points a repeat: 1.6 points apart is no difference, although the binomial rule flags it.
    loose = next(d for d in rows["loose"].diffs if d.metric == "val_accuracy")
    assert rows["loose"].state == "same" and loose.ok and abs(loose.diff) > 0.0127
    assert "mean of 5 (A) and 5 (B) repeats" in rows["loose"].note
    assert "2 run(s) repeated in both builds (the spread rule)" in describe(Tolerance(), list(rows.values()))


def test_a_run_repeated_in_one_build_only_is_compared_run_by_run_with_the_binomial_rule(tmp_path):
    a = _build(tmp_path, "a", {"x": [0.900, 0.901, 0.899]})
    b = _build(tmp_path, "b", {"x": [0.910]})
    rows = {r.name: r for r in compare(a, b).rows}
    assert {n: r.state for n, r in rows.items()} == {"x": "same", "x#2": "removed", "x#3": "removed"}
    assert next(d for d in rows["x"].diffs if d.metric == "val_accuracy").rule == "binomial"
    assert "spread rule" not in describe(Tolerance(), list(rows.values()))


def test_verify_folds_a_runs_re_run_repeats_into_one_row_judged_by_their_spread():
    recorded = {n: {"name": n, "metrics": {"val_accuracy": v}} for n, v in
                (("x", 0.900), ("x#2", 0.902), ("x#3", 0.898), ("y", 0.8))}
    again = {"x": {"val_accuracy": 0.930}, "x#2": {"val_accuracy": 0.931}, "x#3": {"val_accuracy": 0.929},
             "y": {"val_accuracy": 0.8}}
    rows = [Row(name=n, section="1", kind="mlp", state="agrees", note="weights differ") for n in recorded]
    folded = {r.name: r for r in fold_repeats(rows, recorded, again, Tolerance(), VALIDATION)}
    assert set(folded) == {"x", "y"} and folded["y"] is rows[3]
    assert folded["x"].state == "differs" and "3 repeats re-run, compared by their spread" in folded["x"].note
