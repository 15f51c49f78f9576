"""What the section views measure."""

from reportgen.analysis import convergence, epochs_to_converge, params_threshold


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
