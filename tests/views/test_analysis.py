"""What the section views measure."""

from reportgen.views import analysis
from reportgen.views.analysis import convergence, epochs_to_converge, params_threshold


def facts(name, params, val, activation="relu"):
    return {"name": name, "params": params, "val_accuracy": val[-1], "val_accuracy_by_epoch": val,
            "best_val_accuracy": max(val), "first_val_accuracy": val[0], "config": {"activation": activation}}


def test_smallest_model_above_threshold():
    rows = [facts("big", 1000, [0.99]), facts("small", 100, [0.975]), facts("tiny", 10, [0.5])]
    measured = params_threshold(rows, 0.97)
    assert measured["smallest"]["name"] == "small"
    assert measured["largest_below"]["name"] == "tiny"
    assert measured["count_above"] == 2


def test_no_model_above_threshold():
    assert params_threshold([facts("a", 5, [0.5])], 0.97)["smallest"] is None


def test_epochs_to_converge_is_first_epoch_near_the_best():
    assert epochs_to_converge([0.95, 0.97, 0.975, 0.976], 0.005) == 3
    assert epochs_to_converge([0.97, 0.971, 0.97], 0.005) == 1
    assert epochs_to_converge([float("nan")], 0.005) is None


def test_convergence_means_by_activation():
    rows = [facts("t", 1, [0.8, 0.9, 0.95], "tanh"), facts("r", 1, [0.95, 0.95, 0.95], "relu")]
    measured = convergence(rows, 0.005)
    assert measured["mean_epochs"] == {"tanh": 3.0, "relu": 1.0}


def test_a_generator_of_one_digit_scores_one_class_and_no_entropy():
    from reportgen.views.analysis import class_distribution

    one = class_distribution([7] * 500, [0.9] * 500, present_share=0.02)
    assert one["digits_present"] == 1 and one["top_digit"] == 7 and one["top_share"] == 1.0
    assert one["entropy"] == 0.0 and one["shares"][7] == 1.0 and sum(one["shares"]) == 1.0
    even = class_distribution(list(range(10)) * 50, [0.5] * 500, present_share=0.02)
    assert even["digits_present"] == 10 and abs(even["entropy"] - even["max_entropy"]) < 1e-12
    # Two digits, a trace of a third below the threshold: two present, one bit and a little.
    mixed = class_distribution([1] * 490 + [2] * 500 + [3] * 10, [1.0] * 1000, present_share=0.02)
    assert mixed["digits_present"] == 2 and 1.0 < mixed["entropy"] < 1.2


def test_diversity_is_zero_for_copies_and_compared_with_real_images():
    import numpy as np

    from reportgen.views.analysis import mean_pairwise_distance, mode_collapse

    rng = np.random.default_rng(0)
    copies = np.repeat(rng.integers(0, 256, (1, 28, 28), dtype=np.uint8), 50, axis=0)
    varied = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    assert mean_pairwise_distance(copies) == 0.0
    assert mean_pairwise_distance(varied) > 5.0
    measured = mode_collapse([1, 2], np.array([[3] * 50, [3] * 25 + [4] * 25]), np.ones((2, 50)),
                             np.stack([copies, varied]), varied, present_share=0.1, diversity_samples=50)
    first, last = measured["rows"]
    assert first["diversity_ratio"] == 0.0 and abs(last["diversity_ratio"] - 1.0) < 1e-9
    assert (first["digits_present"], last["digits_present"]) == (1, 2) and measured["final"] is last


def test_a_confusion_matrix_counts_right_and_wrong_by_class_with_precision_and_recall():
    labels = [0, 0, 0, 1, 1, 2, 2, 2]
    # Images 1 and 3 were wrong: a "cat" taken for a "dog", a "dog" for a "cow".
    measured = analysis.confusion(labels, wrong=[1, 3], predicted=[1, 2], classes=("cat", "dog", "cow"))
    assert measured["matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 3]]
    assert measured["accuracy"] == 6 / 8 and measured["total"] == 8
    assert measured["recall"] == {"cat": 2 / 3, "dog": 1 / 2, "cow": 1.0}
    assert measured["precision"] == {"cat": 1.0, "dog": 1 / 2, "cow": 3 / 4}
    never = analysis.confusion([0, 0], wrong=[], predicted=[], classes=("cat", "dog"))
    assert never["precision"]["dog"] is None and never["recall"]["dog"] is None


def test_convergence_to_a_threshold_groups_by_what_the_runs_vary():
    runs = [facts("w100", 1, [0.90, 0.95, 0.96]), facts("w200", 2, [0.93, 0.96, 0.97]),
            facts("w50", 3, [0.80, 0.85, 0.90])]
    for run, width in zip(runs, ([100], [200], [50]), strict=True):
        run["config"]["hidden_layers"] = width
    measured = convergence(runs, tolerance=0.005, threshold=0.95)
    assert measured["group_by"] == "hidden_layers"  # the activation is the same for all
    assert [(r["name"], r["group"], r["epochs"]) for r in measured["rows"]] == \
        [("w100", "100", 2), ("w200", "200", 2), ("w50", "50", None)]
    assert measured["not_reached"] == ["w50"] and measured["mean_epochs"] == {"100": 2.0, "200": 2.0}
    assert analysis.epoch_reaching([0.5, 0.4, 0.3], 0.4, lower_is_better=True) == 2
