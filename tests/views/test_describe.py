"""Alt text written from a figure's data, and curves that coincide told apart from curves that do not."""

from __future__ import annotations

from reportgen.views import describe, figures


def _curves(**runs: list[float]) -> dict[str, dict[str, list[float]]]:
    return {name: {"val_accuracy": values} for name, values in runs.items()}


def test_curves_within_one_percent_of_the_axis_coincide_and_others_do_not():
    histories = _curves(a=[0.10, 0.50, 0.90], b=[0.101, 0.502, 0.899], c=[0.10, 0.40, 0.80], d=[0.11, 0.51, 0.91])
    # The axis spans 0.10 to 0.91: a and b are 0.002 apart at most (under 1%), d is 0.01 from a (over 1%).
    assert describe.coinciding(histories, "val_accuracy") == [["a", "b"]]
    assert describe.coinciding(_curves(a=[0.1, 0.5], b=[0.1, 0.5, 0.6]), "val_accuracy") == []  # other lengths


def test_on_a_log_scale_curves_coincide_by_ratio_not_by_difference():
    # Losses of 280 and 0.05 on one plot: 0.050 and 0.052 are far apart on a log axis, 280 and 281 are not.
    losses = {"big": {"loss": [280.0, 100.0]}, "big2": {"loss": [281.0, 100.5]}, "small": {"loss": [0.05, 0.05]},
              "small2": {"loss": [0.052, 0.06]}}
    assert describe.coinciding(losses, "loss") == [["big", "big2"]]


def test_an_overlay_draws_coinciding_runs_as_one_line_with_one_legend_entry():
    histories = _curves(a=[0.1, 0.5, 0.9], b=[0.1, 0.5, 0.9], c=[0.2, 0.3, 0.4])
    groups = describe.coinciding(histories, "val_accuracy")
    fig = figures.overlay(histories, "val_accuracy", groups)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["a = b", "c"] and len(fig.axes[0].lines) == 2
    sentence = describe.coincide_sentence(groups)
    assert sentence.startswith("The curves of a and b coincide") and "drawn as one line" in sentence
    assert describe.coincide_sentence([]) == ""


def test_overlay_alt_text_says_what_is_plotted_the_extremes_and_the_coinciding_runs():
    histories = _curves(**{"l2-0": [0.80, 0.9412], "l2-1e-8": [0.80, 0.9413], "l2-1": [0.11, 0.10]})
    alt = describe.overlay(histories, "val_accuracy", describe.coinciding(histories, "val_accuracy"), 2)
    assert alt.startswith("Line chart of validation accuracy per epoch (1 to 2) for 3 runs.")
    assert "the best is l2-1e-8 at 94.13%, the worst l2-1 at 10.00%" in alt
    assert "The curves of l2-0 and l2-1e-8 coincide" in alt
    losses = {"a": {"loss": [280.0, 2.3]}, "b": {"loss": [0.3, 0.05]}}
    assert "on a log scale" in describe.overlay(losses, "loss", [], 2)
    assert "the best is b at 0.0500" in describe.overlay(losses, "loss", [], 2)  # the lowest loss is the best


def test_alt_text_uses_the_projects_percent_digits():
    histories = _curves(only=[0.5, 0.96812])
    assert "96.8%" in describe.curves_grid(histories, 1) and "96.81%" in describe.curves_grid(histories, 2)
    assert describe.curves_grid(histories, 1).startswith("Line chart of only's training and validation accuracy")
    many = describe.curves_grid(_curves(a=[0.5, 0.9], b=[0.5, 0.7]), 2)
    assert many.startswith("2 small line charts") and "highest for a, 90.00%, and lowest for b, 70.00%" in many


def test_misclassified_alt_text_names_the_most_frequent_mistakes_and_the_confidence_range():
    alt = describe.misclassified("cnn", [4, 4, 7, 4], [9, 9, 1, 9], [0.99, 0.8, 0.7, 0.55], shown=4, total=30,
                                 of=1000, classes=[str(i) for i in range(10)], digits=0)
    assert "the 4 most confident of 30 misclassified validation images (of 1,000) of cnn" in alt
    assert "4 read as 9 (3), 7 read as 1 (1)" in alt and "from 99% down to 55%" in alt


def test_params_alt_text_names_the_smallest_run_over_the_threshold_or_says_none_is():
    points = [{"label": "small", "params": 1000, "val_accuracy": 0.9},
              {"label": "mid", "params": 5000, "val_accuracy": 0.975},
              {"label": "big", "params": 90000, "val_accuracy": 0.98}]
    alt = describe.params_vs_accuracy(points, 0.97, "97%", 2)
    assert "2 of 3 runs reach it, the smallest mid with 5,000 parameters at 97.50%" in alt
    assert describe.params_vs_accuracy(points[:1], 0.97, "97%", 2).endswith("no run reaches it.")


def test_mode_collapse_alt_text_gives_the_last_epochs_top_class_and_entropy():
    rows = [{"epoch": 1, "shares": [1.0] + [0.0] * 9, "entropy": 0.0, "max_entropy": 3.32, "digits_present": 1},
            {"epoch": 2, "shares": [0.5, 0.5] + [0.0] * 8, "entropy": 1.0, "max_entropy": 3.32, "digits_present": 2}]
    alt = describe.mode_collapse("gan", "cnn", rows, [str(i) for i in range(10)], 1)
    assert "After epoch 2 the most common class is 0 at 50.0%, 2 of 10 classes appear" in alt
    assert "the entropy is 1.00 bits (from 0.00 to 1.00 over the epochs)" in alt
