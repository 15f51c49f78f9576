"""Finding hand-typed numbers in commentary and matching them against results."""

from __future__ import annotations

from reportgen.grade.check import Candidate, matches, nearest, placeholder, typed_numbers, unmatched_claims
from reportgen.report.lock import quote_changes, some_changes


def test_typed_numbers_skip_placeholders_math_code_links_and_config_like_values() -> None:
    source = ("Reached 97.3% and 0.9826 with 27,660 weights in 2024; batch 128, dropout 0.5.\n"
              "Placeholders {{ runs.a.val_accuracy | pct }} and math $p = 0.95$ and `0.123` and "
              "[a link](http://example.org/1.2345) and version 3.15.1 are not claims.\n"
              "```\nloss 0.4321\n```\n"
              "1,486,352 parameters.")
    found = [(t.line, t.text, t.unit, t.decimals) for t in typed_numbers(source)]
    assert found == [(1, "97.3%", "%", 1), (1, "0.9826", "decimal", 4), (1, "27,660", "count", 0),
                     (6, "1,486,352", "count", 0)]


def test_numbers_that_name_things_are_not_claims_and_marked_up_ones_are() -> None:
    source = ("Section 2.10, TensorFlow 2.15, arXiv:1412.6980, p < 0.05, a $12.50 fee.\n"
              "*97.3%* and __0.98__ and -0.25 and (96.1%).\n\n    indented code 0.4321\n")
    assert [(t.text, t.value) for t in typed_numbers(source)] == [
        ("97.3%", 97.3), ("0.98", 0.98), ("-0.25", -0.25), ("96.1%", 96.1)]


def test_a_fraction_typed_as_a_percentage_is_caught() -> None:
    typed = typed_numbers("an error of 0.98%")[0]
    assert not matches(typed, 0.98) and matches(typed, 0.0098)


def test_a_typed_number_matches_at_the_precision_written() -> None:
    pct = typed_numbers("97.3%")[0]
    assert matches(pct, 0.97312) and matches(pct, 0.97349) and matches(pct, 97.3)
    assert not matches(pct, 0.9745) and not matches(pct, 1.0)
    dec = typed_numbers("0.98")[0]
    assert matches(dec, 0.9812) and not matches(dec, 0.97)
    count = typed_numbers("27,660")[0]
    assert matches(count, 27660) and not matches(count, 27661)


def test_the_nearest_result_is_suggested_with_the_placeholder_that_prints_it() -> None:
    found = [Candidate('runs["a"].val_accuracy', 0.9701, True), Candidate('runs["b"].val_accuracy', 0.9512, True),
             Candidate('runs["a"].params', 27660.0, True), Candidate('runs["a"].config.dropout', 0.25, False)]
    claims = unmatched_claims("a got 96.9%, b 95.12% with 27,660 and dropout 25% and 30,000.", found)
    assert [t.text for t, _ in claims] == ["96.9%", "30,000"]
    typed, near = claims[0]
    assert near is not None and placeholder(typed, near) == '{{ runs["a"].val_accuracy | pct(1) }}'
    assert placeholder(claims[1][0], nearest(claims[1][0], found)) == '{{ runs["a"].params | num }}'


def test_quote_changes_tell_an_edited_slot_from_a_stale_one() -> None:
    recorded = {"text": "t1", "quotes": ["97.01%", "27,660"]}
    assert quote_changes(recorded, "t1", ["97.01%", "27,660"]) is None  # unchanged
    assert quote_changes(recorded, "t2", ["96.50%", "27,660"]) is None  # edited since: current
    assert quote_changes(None, "t1", ["96.50%"]) is None  # never recorded
    assert quote_changes(recorded, "t1", ["96.50%", "27,660"]) == ["97.01% -> 96.50%"]


def test_a_long_list_of_changed_values_says_how_many_it_leaves_out() -> None:
    recorded = {"text": "t", "quotes": [f"{i}%" for i in range(6)]}
    changes = quote_changes(recorded, "t", [f"{i + 10}%" for i in range(6)])
    assert changes is not None and len(changes) == 6
    assert some_changes(changes) == "0% -> 10%; 1% -> 11%; 2% -> 12%; 3% -> 13%; 4% -> 14%; and 1 more"
    assert some_changes(changes[:5]) == "0% -> 10%; 1% -> 11%; 2% -> 12%; 3% -> 13%; 4% -> 14%"


def test_durations_a_lock_recorded_before_they_were_left_out_do_not_make_a_slot_stale() -> None:
    recorded = {"text": "t", "quotes": ["97.01%", "3.6 s", "27,660"]}
    assert quote_changes(recorded, "t", ["97.01%", "27,660"]) is None
    assert quote_changes(recorded, "t", ["96.50%", "27,660"]) == ["97.01% -> 96.50%"]
